"""Report section for the tuning sweep (tuning_<device>.csv): every learning rate and warm-up
tried per decoder at the tuning length, and the one the quality sweep used.

The winner reached the target on the fewest training tokens; when no setting reached it, the
highest validation exact match won (sweeps/tuning.py: choose). Selection uses validation
numbers only; test metrics of these cells are not shown.
"""

from __future__ import annotations

import json

import pandas as pd

from benchmarks.report.base import Report, fmt
from benchmarks.report.quality import ok_rows
from benchmarks.sweeps.tuning import choose

COLUMNS = ["decoder", "lr", "warmup_steps", "stop_reason", "steps", "tokens", "val_exact_match",
           "val_token_acc", "chosen"]  # fmt: skip


def tuning(rep: Report, frames: dict[str, pd.DataFrame]) -> None:
    rep.h(2, "Learning rate and warm-up per decoder (tuning sweep)")
    if not frames:
        rep.say("No `tuning_<device>.csv`: run `python -m benchmarks tune`.")
        return
    for dev, raw in frames.items():
        df = ok_rows(raw)
        if df.empty:
            rep.say(f"{dev}: no successful tuning cell.")
            continue
        chosen = choose(raw.astype(object).where(raw.notna(), None).to_dict("records"))
        cfg = pd.DataFrame([json.loads(c) for c in df["train_cfg"]], index=df.index)
        table = df.assign(lr=cfg["lr"], warmup_steps=cfg["warmup_steps"])
        table["chosen"] = [
            "✓" if chosen.get(r.decoder, {}).get("lr") == r.lr
            and chosen[r.decoder]["warmup_steps"] == r.warmup_steps else ""
            for r in table.itertuples()
        ]  # fmt: skip
        task, length = df["task"].iloc[0], int(df["length"].iloc[0])
        rep.say(
            f"Tuned on {task} L={length} (not a headline length), seed 0, with the quality "
            "sweep's width, batch and stopping rule. Chosen: "
            + "; ".join(
                f"{d} lr {fmt(h['lr'])}, warm-up {h['warmup_steps']}"
                for d, h in sorted(chosen.items())
            )
            + "."
        )
        table = table.sort_values(["decoder", "lr", "warmup_steps"])[COLUMNS]
        rep.table(f"tuning_{dev}", table, f"Tuning sweep ({dev})")
