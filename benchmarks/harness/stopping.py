"""The stopping rule, applied at every validation pass: target, plateau, or (by the loop) cap.

What each rule means and why the plateau watches two metrics is in harness/config.py. Here: one
greedy validation pass, the bookkeeping it updates (best weights' key, each metric's best, the
count of evaluations without a gain), and the rule that fired, if any. All of it lives in the
run's state, which the checkpoint saves, so a resumed run stops exactly where an uninterrupted
one would.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from benchmarks.harness.config import SELECT_METRICS, TrainConfig
from benchmarks.harness.evaluate import evaluate
from benchmarks.tasks.base import TaskData
from models.seq2seq import Seq2Seq


def tokens_to(history: list[dict[str, Any]], metric: str, level: float) -> int | None:
    """Training tokens at the first evaluation whose `metric` reached `level` (None: never)."""
    return next((int(h["tokens"]) for h in history if h.get(metric, -math.inf) >= level), None)


def signed(metrics: dict[str, Any], name: str) -> float:
    """A validation metric with larger meaning better (the NLL negated)."""
    return metrics[name] * (1 if SELECT_METRICS[name] else -1)


def reached(value: float, metric: str, level: float) -> bool:
    """`value` of `metric` is at least as good as `level` (lower is better for the NLL)."""
    return value >= level if SELECT_METRICS[metric] else value <= level


def validate(
    model: Seq2Seq,
    task: TaskData,
    cfg: TrainConfig,
    device: torch.device,
    state: dict[str, Any],
    running: list[float],
) -> str | None:
    """Greedy validation pass; updates the best weights' key and the plateau count; returns the
    stop reason that fired, if any.

    The weights kept are those with the best (target_metric, select_metric), compared in that
    order: exact match first, token accuracy breaking ties (all-zero exact match at long
    lengths). The plateau counts evaluations in which NEITHER metric gained more than
    `min_delta` over its own best: token accuracy saturates near 1 while exact match still
    climbs, and exact match sits at 0 while token accuracy still climbs; either is learning.
    Checked in this order: the target, then the plateau.
    """
    metrics = evaluate(model, task, task.val, device, 1, caption_metrics=False)
    row = {
        "step": state["step"],
        "tokens": state["tokens"],
        "train_s": round(state["train_s"], 3),
        "train_loss": float(np.mean(running)) if running else math.nan,
    }
    state["history"].append(row | metrics)
    key = [signed(metrics, cfg.target_metric), signed(metrics, cfg.select_metric)]
    state["improved"] = state.get("best_key") is None or key > state["best_key"]
    if state["improved"]:
        state["best_key"] = key
        state["best_val"] = metrics  # the val metrics of the weights train() will return
    best, gained = state.setdefault("plateau_best", {}), False
    for name in dict.fromkeys((cfg.target_metric, cfg.select_metric)):
        if name not in best or signed(metrics, name) > best[name] + cfg.min_delta:
            best[name], gained = signed(metrics, name), True
    state["bad_evals"] = 0 if gained else state["bad_evals"] + 1
    if cfg.target is not None and reached(
        metrics[cfg.target_metric], cfg.target_metric, cfg.target
    ):
        return "target"
    if cfg.patience > 0 and state["bad_evals"] >= cfg.patience:
        return "plateau"
    return None
