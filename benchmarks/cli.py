"""`python -m benchmarks train|caption`: train one model, or caption test examples from a
checkpoint and draw the attention heat map. Flags map one-to-one onto TrainConfig fields."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.batching import collate
from benchmarks.harness.checkpoint import CheckpointError, load_checkpoint, load_state
from benchmarks.timing.devices import resolve_device
from benchmarks.report.heatmaps import save_heatmaps
from benchmarks.tasks import load_task
from benchmarks.harness.train import TrainConfig, build_model, train
from models.seq2seq import greedy


def parse_kv(items: list[str], flag: str) -> dict[str, Any]:
    """['length=8', 'split=simple'] -> {'length': 8, 'split': 'simple'} (JSON values parsed)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE; got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model on one task and print its metrics")
    p.add_argument(
        "--task", required=True, help="digits | copy | reverse | sort | scan | coco | plain"
    )
    p.add_argument(
        "--length", type=int, help="the task's length dial (digits, copy, reverse, sort)"
    )
    p.add_argument("--split", help="scan split: simple | length")
    p.add_argument(
        "--task-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other task option, e.g. n_train=500 or data_dir=/data/coco",
    )
    p.add_argument(
        "--decoder-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="decoder option, e.g. cell=gru or kernel=chunked",
    )
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    for f in fields(TrainConfig):
        if f.name == "decoder_cfg":
            continue
        default = f.default
        kind = type(default) if default is not None and not isinstance(default, bool) else str
        if isinstance(default, bool):
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                dest=f.name,
                default=default,
                action=argparse.BooleanOptionalAction,
            )
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=default)


def run_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    task_args = parse_kv(args.task_arg, "--task-arg")
    if args.length is not None:
        task_args["length"] = args.length
    if args.split is not None:
        task_args["split"] = args.split
    if args.task not in ("coco", "plain"):  # generated tasks share the run's seed by default
        task_args.setdefault("seed", args.seed)
    cfg = TrainConfig(
        **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "decoder_cfg"},
        decoder_cfg=parse_kv(args.decoder_arg, "--decoder-arg"),
    )
    task = load_task(args.task, **task_args)
    result = train(task, cfg, progress=sys.stderr.isatty(), task_args=task_args)
    summary = {
        "task": args.task,
        **task_args,
        "decoder": cfg.decoder,
        "params": result.params,
        "steps": result.steps,
        "train_s": round(result.train_s, 2),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "test": result.test,
    }
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


def add_caption_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="decode test examples from a checkpoint; write a heat map")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--n", type=int, default=3, help="test examples to caption")
    p.add_argument("--out", type=Path, help="heat-map PNG (default: beside the checkpoint)")
    p.add_argument("--device", default="cpu")


def run_caption(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    task_info = ckpt.get("task", {})
    if task_info.get("args") is None:  # saved by train() without task_args: defaults could lie
        raise CheckpointError(f"checkpoint {args.checkpoint} does not record its task arguments")
    task = load_task(task_info["name"], **task_info["args"])
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    device = resolve_device(args.device)
    model = build_model(task, cfg).to(device)
    load_state(model, ckpt["best_model"] or ckpt["model"], args.checkpoint)
    model.eval()
    examples = task.test[: args.n]
    batch = collate(examples, task.source_kind).to(device)
    with torch.no_grad():
        enc = model.encode(batch.source, batch.source_mask)
        out, attn = greedy(model.decoder, enc, task.max_target_len + 5)
    vocab, panels = task.tgt_vocab, []
    for row, ex in enumerate(examples):
        words = vocab.decode(out[row].tolist())
        print(f"{ex.id}: {' '.join(words)}  |  reference: {' '.join(vocab.decode(ex.target))}")
        if attn is not None:
            s_real = int(enc.memory_mask[row].sum())
            t_real = max(len(words) + 1, 1)
            in_labels = task.src_vocab.decode(ex.source.tolist()) if task.src_vocab else None
            panels.append(
                {
                    "attn": attn[row, :t_real, :s_real].cpu().numpy(),
                    "out_words": words + ["<END>"],
                    "in_labels": in_labels,
                    "title": f"{cfg.decoder} alignment, {ex.id}",
                }
            )
    if not panels:
        print(
            f"decoder '{cfg.decoder}' has no attention (its only view of the input is the summary)"
        )
        return 0
    path = args.out or args.checkpoint.with_suffix(".attention.png")
    image = examples[0].source[0] if task.source_kind == "image" and len(panels) == 1 else None
    save_heatmaps(path, panels, image=image)
    print(f"wrote {path}")
    return 0
