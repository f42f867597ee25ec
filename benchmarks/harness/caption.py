"""Caption test examples from a checkpoint and draw where each output token looked.

Rebuilds the task from the arguments recorded in the checkpoint (never from defaults, which
could silently describe another task), decodes greedily, and returns the captions with the
attention heat-map panels. Shapes: T generated tokens, S memory positions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness.batching import collate
from benchmarks.harness.checkpoint import CheckpointError, load_checkpoint, load_state
from benchmarks.harness.train import TrainConfig, build_model
from benchmarks.tasks import load_task
from benchmarks.tasks.base import TaskData
from models.base import EOS
from models.seq2seq import greedy


@dataclass
class Captions:
    decoder: str
    lines: list[str]  # "<id>: <caption>  |  reference: <reference>" per example
    panels: list[dict[str, Any]]  # heat-map panels (attn (T, S), words); empty without attention
    image: np.ndarray | None  # the strip under a single digits panel, else None


def task_of(ckpt: dict[str, Any], path: Path) -> TaskData:
    """The task a checkpoint was trained on, from its recorded arguments."""
    task_info = ckpt.get("task", {})
    if task_info.get("args") is None:  # saved by train() without task_args: defaults could lie
        raise CheckpointError(f"checkpoint {path} does not record its task arguments")
    return load_task(task_info["name"], **task_info["args"])


@torch.no_grad()
def caption(path: Path, n: int, device: torch.device) -> Captions:
    """Greedy captions of the first `n` test examples, with their attention panels."""
    ckpt = load_checkpoint(path)
    task = task_of(ckpt, path)
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    model = build_model(task, cfg).to(device)
    load_state(model, ckpt["best_model"] or ckpt["model"], path)
    model.eval()
    examples = task.test[:n]
    batch = collate(examples, task.source_kind).to(device)
    enc = model.encode(batch.source, batch.source_mask)
    out, attn = greedy(model.decoder, enc, task.max_decode_len)
    vocab, lines, panels = task.tgt_vocab, [], []
    for row, ex in enumerate(examples):
        words = vocab.decode(out[row].tolist())
        lines.append(
            f"{ex.id}: {' '.join(words)}  |  reference: {' '.join(vocab.decode(ex.target))}"
        )
        if attn is None:
            continue
        s_real = int(enc.memory_mask[row].sum())
        in_labels = task.src_vocab.decode(ex.source.tolist()) if task.src_vocab else None
        panels.append(
            {
                "attn": attn[row, : len(words) + 1, :s_real].cpu().numpy(),  # (T, S), EOS included
                "out_words": [*words, vocab.idx_to_word[EOS]],
                "in_labels": in_labels,
                "title": f"{cfg.decoder} alignment, {ex.id}",
            }
        )
    single_strip = task.source_kind == "image" and len(panels) == 1
    return Captions(cfg.decoder, lines, panels, examples[0].source[0] if single_strip else None)
