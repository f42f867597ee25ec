"""`python -m benchmarks quality`: quality vs length, decoder x task x length x seed.

Every cell of a profile shares width, data, batch and the stopping rule (sweeps/profiles.py);
each decoder's learning rate and warm-up come from the tuning sweep (sweeps/tuning.py). Each
cell trains until validation exact match reaches the target, or token accuracy plateaus, or the
step cap: its row says which (`stop_reason`), and a capped cell is never a headline result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.profiles import Profile
from benchmarks.sweeps.tuning import common_budget, hparams_for
from models.registry import list_decoders


def quality_cells(profile: Profile, tuning_csv: Path | None = None) -> list[Cell]:
    decoders = list_decoders()
    hparams = hparams_for(decoders, tuning_csv, profile)

    def cell(task: str, args: dict, dec: str, seed: int, **kw: Any) -> Cell:
        scan = task == "scan"
        steps = profile.scan_max_steps if scan else profile.max_steps
        decay = profile.scan_decay_steps if scan else profile.decay_steps
        train = common_budget(profile, seed, steps, decay) | _lr(hparams[dec])
        train["meteor"] = task == "digits" and profile.meteor  # the captioning task's COCO metrics
        extra = {"hparams": hparams[dec]["hparams"]}
        if task != "scan":  # where attention looks: the ablations read it from these cells
            extra["alignment"] = True
        return Cell("quality", task, args, dec, train, extra=extra, **kw)

    cells = []
    for seed in profile.seeds:
        for task in ("digits", "reverse"):
            for length in getattr(profile, f"{task}_lengths"):
                args = {"length": length, "seed": seed, **profile.task_sizes(task)}
                cells += [cell(task, args, dec, seed, length=length) for dec in decoders]
        for split in profile.scan_splits:
            args = {"split": split, "seed": seed, "n_val": profile.n_eval}
            args["max_test"] = 5 * profile.n_eval
            cells += [cell("scan", args, dec, seed, label=f"scan-{split}") for dec in decoders]
    return cells


def _lr(hparams: dict) -> dict:
    return {"lr": hparams["lr"], "warmup_steps": hparams["warmup_steps"]}
