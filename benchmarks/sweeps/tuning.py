"""`python -m benchmarks tune`: each decoder's learning rate and warm-up, from a small sweep.

Every registered decoder is trained at the profile's tuning length (reverse L=10 by default: not
a headline length, so the headline cells are not the ones the settings were picked on) with the
profile's stopping rule, for each learning rate (its registry default times each factor) and
warm-up. The winner per decoder is the setting that reached the target on the fewest training
tokens; when none reached it, the highest validation exact match (then token accuracy). The
quality and ablation sweeps read the winners from the tuning CSV; without one they fall back to
the registry defaults and say so in every row (`hparams` = tuned | default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.profiles import Profile
from benchmarks.sweeps.store import read_rows
from models.registry import decoder_class, list_decoders

Hparams = dict[str, Any]  # {"lr": float, "warmup_steps": int, "hparams": "tuned" | "default"}


def common_budget(
    profile: Profile, seed: int, max_steps: int | None = None, decay_steps: int | None = None
) -> dict[str, Any]:
    """TrainConfig fields every decoder shares in a profile: width, batch, stopping rule and
    schedule, seed."""
    return {
        "d_model": profile.d_model,
        "batch_size": profile.batch_size,
        "meteor": False,
        "seed": seed,
        **profile.stopping(max_steps, decay_steps),
    }


def tuning_cells(profile: Profile) -> list[Cell]:
    task, length = profile.tune_task
    args = {"length": length, "seed": 0, **profile.task_sizes(task)}
    cells = []
    for dec in list_decoders():
        base = decoder_class(dec).default_lr
        for factor in profile.tune_lr_factors:
            for warmup in profile.tune_warmups:
                lr = float(f"{base * factor:.3g}")
                train = common_budget(profile, 0, profile.tune_max_steps)
                train |= {"lr": lr, "warmup_steps": warmup}
                label = f"lr={lr:g} warmup={warmup}"
                cells.append(Cell("tuning", task, args, dec, train, label=label, length=length))
    return cells


def _rank(row: dict[str, Any]) -> tuple:
    """Smaller is better: reached the target on fewer tokens; else higher val exact match."""
    if row.get("stop_reason") == "target":
        return (0, float(row["tokens"]))
    return (1, -_number(row.get("val_exact_match")), -_number(row.get("val_token_acc")))


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return x if math.isfinite(x) else -math.inf


def choose(rows: list[dict[str, Any]]) -> dict[str, Hparams]:
    """decoder -> the winning {lr, warmup_steps} among its finished tuning rows."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("sweep") != "tuning" or row.get("status") != "ok":
            continue
        dec = row["decoder"]
        if dec not in best or _rank(row) < _rank(best[dec]):
            best[dec] = row
    out = {}
    for dec, row in best.items():
        cfg = json.loads(row["train_cfg"])
        out[dec] = {"lr": cfg["lr"], "warmup_steps": cfg["warmup_steps"], "hparams": "tuned"}
    return out


def hparams_for(
    decoders: list[str], tuning_csv: Path | None, profile: Profile
) -> dict[str, Hparams]:
    """Tuned settings where the tuning CSV has them, else the registry default (and say so)."""
    tuned = choose(read_rows(tuning_csv)) if tuning_csv is not None else {}
    out = {}
    for dec in decoders:
        default = {"lr": decoder_class(dec).default_lr, "warmup_steps": profile.tune_warmups[0]}
        out[dec] = tuned.get(dec) or default | {"hparams": "default"}
    return out
