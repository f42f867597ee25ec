"""`python -m benchmarks <command>`: the one entry point.

    train      train one model on one task and print its metrics (flags = TrainConfig fields)
    caption    caption test examples from a checkpoint and draw the attention heat map
    tune | quality | ablations | kernels | all     the benchmark sweeps (`all` is `make bench`)
    report     results/raw -> results/tables, results/plots, results/README.md

Bad input is a `ConfigError` (models/errors.py): one line `error: ...` on stderr, exit code 2.
That includes argparse's own errors, and every flag `check_flags` can check before any work (the
device, output locations, counts), each naming the flag and the value. Ctrl-C prints one line
(`interrupted: N of M cells done; rerun the same command to resume` in a sweep), exit code 130.
Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from benchmarks.flags import Parser, check_flags, check_sweep_flags, flag_message, output_file
from models.errors import ConfigError

SWEEPS = {
    "tune": "each decoder's learning rate and warm-up, from a small sweep off the headline lengths",
    "quality": "decoder x task x length x seed: quality vs sequence length",
    "ablations": "the seed's claims: alignment, sqrt(D) scaling, positions, causal mask, ...",
    "kernels": "attention-kernel, decode and training-step timings (pytest-benchmark)",
    "all": "tune + quality + ablations + kernels + report (what `make bench` runs)",
}


def parse_kv(items: list[str], flag: str) -> dict[str, Any]:
    """['length=8', 'split=simple'] -> {'length': 8, 'split': 'simple'} (JSON values parsed)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} expects KEY=VALUE; got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    from benchmarks.harness.train import TrainConfig

    p = sub.add_parser("train", help="train one model on one task and print its metrics")
    p.add_argument(
        "--task", required=True, help="digits | copy | reverse | sort | scan | coco | plain"
    )
    p.add_argument(
        "--length", type=int, help="the task's length dial (digits, copy, reverse, sort)"
    )
    p.add_argument("--split", help="scan split: simple | length")
    p.add_argument(
        "--task-arg", action="append", default=[], metavar="KEY=VALUE",
        help="any other task option, e.g. n_train=500 or data_dir=/data/coco",
    )  # fmt: skip
    p.add_argument(
        "--decoder-arg", action="append", default=[], metavar="KEY=VALUE",
        help="decoder option, e.g. cell=gru or kernel=chunked",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name == "decoder_cfg":
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if hints[f.name] is bool:
            bool_flag = argparse.BooleanOptionalAction
            p.add_argument(flag, dest=f.name, default=f.default, action=bool_flag)
        else:  # `float | None` parses as float; an absent flag keeps the default
            kinds = [t for t in typing.get_args(hints[f.name]) if t is not type(None)]
            p.add_argument(flag, dest=f.name, type=(kinds or [hints[f.name]])[0], default=f.default)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.files import atomic_write_text
    from benchmarks.harness.train import TrainConfig, train
    from benchmarks.tasks import load_task

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    task_args = parse_kv(args.task_arg, "--task-arg")
    if args.length is not None:
        task_args["length"] = args.length
    if args.split is not None:
        task_args["split"] = args.split
    if args.task not in ("coco", "plain"):  # generated tasks share the run's seed by default
        task_args.setdefault("seed", args.seed)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "decoder_cfg"}
    try:
        cfg = TrainConfig(**given, decoder_cfg=parse_kv(args.decoder_arg, "--decoder-arg"))
    except ConfigError as exc:  # "eval_every=0: ..." -> "--eval-every=0: ..."
        raise ConfigError(flag_message(str(exc))) from None
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
        atomic_write_text(args.out, text + "\n")
    return 0


def add_caption_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="decode test examples from a checkpoint; write a heat map")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--n", type=int, default=3, help="test examples to caption")
    p.add_argument("--out", type=Path, help="heat-map PNG (default: beside the checkpoint)")
    p.add_argument("--device", default="cpu")


def run_caption(args: argparse.Namespace) -> int:
    from benchmarks.harness.caption import caption
    from benchmarks.report.heatmaps import save_heatmaps
    from benchmarks.timing.devices import resolve_device

    path = args.out or args.checkpoint.with_suffix(".attention.png")
    if args.out is None:  # the default location is checked too, before decoding
        output_file("--out (default: beside --checkpoint)", path)
    result = caption(args.checkpoint, args.n, resolve_device(args.device))
    print("\n".join(result.lines))
    if not result.panels:
        no_attention = "has no attention (its only view of the input is the summary)"
        print(f"decoder '{result.decoder}' {no_attention}")
        return 0
    save_heatmaps(path, result.panels, image=result.image)
    print(f"wrote {path}")
    return 0


def add_sweep_parsers(sub: argparse._SubParsersAction) -> None:
    for name, text in SWEEPS.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--profile", default="default", help="quick | default | full")
        p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps | auto")
        p.add_argument("--results", type=Path, default=Path("results"))
        if name != "kernels":
            p.add_argument("--executor", default="local", help="local | sequential | ray")
            p.add_argument(
                "--workers", type=int, default=None, help="local pool size (default: cores)"
            )
            p.add_argument(
                "--ray-address", default=None, help="with --executor ray: join this cluster"
            )
    p = sub.add_parser("report", help="tables, plots and results/README.md from results/raw")
    p.add_argument("--results", type=Path, default=Path("results"))


def run_sweep_command(args: argparse.Namespace) -> int:
    from benchmarks.sweeps import runner
    from benchmarks.timing.devices import device_name

    check_sweep_flags(args)
    args.device = device_name(args.device)  # 'auto' resolved once, here: workers, Ray, files
    raw = args.results / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    ex = {}
    if args.command != "kernels":
        ex = {"executor": args.executor, "workers": args.workers, "ray_address": args.ray_address}
    log = print
    if args.command == "tune":
        runner.run_tuning(raw, args.profile, args.device, log, **ex)
    elif args.command == "quality":
        runner.run_quality(raw, args.profile, args.device, log, **ex)
    elif args.command == "ablations":
        runner.run_ablations(raw, args.profile, args.device, log, **ex)
    elif args.command == "kernels":
        from benchmarks.timing.run import run_kernels

        for path in run_kernels(args.device, args.profile, raw):
            log(f"wrote {path}")
    else:
        timing = runner.run_all(raw, args.results, args.profile, args.device, log, **ex)
        log(f"phases (s): {timing}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from benchmarks.report.build import build_report

    paths = build_report(args.results / "raw", args.results)
    print(f"wrote {len(paths)} files under {args.results} (README: {args.results / 'README.md'})")
    return 0


def interrupted(args: argparse.Namespace | None, exc: KeyboardInterrupt) -> str:
    """The one line Ctrl-C prints: how far a sweep got, and whether a rerun resumes."""
    if str(exc):  # a sweep's SweepInterrupted: "N of M cells done"
        return f"interrupted: {exc}; rerun the same command to resume"
    command = getattr(args, "command", None)
    if command in ("tune", "quality", "ablations", "all") or getattr(args, "checkpoint_dir", None):
        return "interrupted; rerun the same command to resume"
    return "interrupted"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_caption_parser(sub)
    add_sweep_parsers(sub)
    commands = {"train": run_train, "caption": run_caption, "report": run_report}
    args = None
    try:
        args = parser.parse_args(argv)
        check_flags(args)
        return commands.get(args.command, run_sweep_command)(args)
    except ConfigError as exc:  # bad input: one line naming it; anything else is a bug
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, no traceback
        print(interrupted(args, exc), file=sys.stderr)
        return 130
