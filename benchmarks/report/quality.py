"""Report section for the quality sweep (quality_<device>.csv): quality vs length per task and
decoder, the training budget, SCAN splits, and quality vs training cost.

Every sentence is computed from the rows: mean over seeds, sample std, the `READY` exact-match
bar. L is the task's length dial (digits per strip, tokens to reverse).
"""

from __future__ import annotations

import re

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt, numeric, parse_json, summarise

BUCKET_METRICS = ["exact_match", "token_accuracy", "nll"]
READY = 0.95  # "keeps >= 95 % exact match"
QUALITY_METRICS = (
    "exact_match bleu4 cider meteor token_acc ppl val_loss params tokens_per_s train_s".split()
)
NUMERIC = [*QUALITY_METRICS, "length", "seed", "tf_token_acc", "alignment_fraction", "wall_s"]
BUDGET_KEYS = ["d_model", "max_steps", "batch_size", "lr", "warmup_steps"]
SEQUENCE_PANELS = [("exact_match", "exact match"), ("val_loss", "test NLL/token")]
TASK_PLOTS = {"digits": [SEQUENCE_PANELS[0], ("bleu4", "BLEU-4"), SEQUENCE_PANELS[1]]}


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return numeric(df[df["status"] == "ok"], NUMERIC)


def longest_ready(df: pd.DataFrame) -> dict[str, int | None]:
    """Per decoder: the longest L such that every tested length up to L has mean EM >= READY."""
    means = df.groupby(["decoder", "length"])["exact_match"].mean()
    out: dict[str, int | None] = {}
    for dec in sorted(df["decoder"].unique()):
        best = None
        for length, em in means[dec].sort_index().items():
            if em < READY:
                break
            best = int(length)
        out[dec] = best
    return out


def _at_longest(df: pd.DataFrame) -> str:
    longest = int(df["length"].max())
    em = df[df["length"] == longest].groupby("decoder")["exact_match"].mean()
    return (
        f"At L={longest} the mean exact match is "
        + ", ".join(f"{dec} {fmt(v)}" for dec, v in em.items())
        + "."
    )


def _span(values: pd.Series) -> str:
    """'64', or '16–64' when the value varies (batch size with length)."""
    vals = sorted(values.dropna().unique())
    return (
        "–" if not vals else fmt(vals[0]) if len(vals) == 1 else f"{fmt(vals[0])}–{fmt(vals[-1])}"
    )


def _budget(rep: Report, df: pd.DataFrame, dev: str) -> None:
    cfg = pd.DataFrame([parse_json(s, {}) for s in df["train_cfg"]], index=df.index)
    cfg = cfg.reindex(columns=BUDGET_KEYS).assign(
        task=df["task"], decoder=df["decoder"], length=df["length"], split=df.get("split")
    )
    rows = [
        {"task": task, "decoder": dec} | {k: _span(g[k]) for k in BUDGET_KEYS}
        for (task, dec), g in cfg.groupby(["task", "decoder"], sort=True)
    ]
    table = pd.DataFrame(rows)
    per_cell = cfg.groupby(["task", "length", "split"], dropna=False)
    same = per_cell[["d_model", "max_steps", "batch_size"]].nunique().max().max() <= 1
    rep.say(
        "Training budget per cell, from each row's `train_cfg` (batch size shrinks with length "
        "so a step carries a similar number of target tokens).",
        "Steps, width and batch are identical across decoders for every task; only the "
        "learning rate is per decoder."
        if same
        else "Budgets differ across decoders: compare with care.",
    )
    rep.table(f"budget_{dev}", table, f"Training budget ({dev})")


def quality(rep: Report, frames: dict[str, pd.DataFrame]) -> None:
    rep.h(2, "Quality vs length")
    if not frames:
        rep.say(
            "No `quality_<device>.csv` in the raw results: run "
            "`python -m benchmarks quality --profile default --device cpu`."
        )
        return
    for dev, raw in frames.items():
        df = ok_rows(raw)
        if df.empty:
            rep.say(f"{dev}: no successful quality cell (see Failed cells).")
            continue
        _budget(rep, df, dev)
        tasks = sorted(set(df.loc[df["length"].notna(), "task"]), key=lambda t: (t != "digits", t))
        ready_rows = [row for task in tasks for row in _task(rep, df[df["task"] == task], dev)]
        if ready_rows:
            rep.table(
                f"ready_{dev}",
                pd.DataFrame(ready_rows),
                f"Longest L with ≥{READY:.0%} mean exact match ({dev})",
            )
        _scan(rep, df[df["task"] == "scan"], dev)
        _cost(rep, df, dev)


def _task(rep: Report, sub: pd.DataFrame, dev: str) -> list[dict]:
    """One task's figure, table and reading; returns its longest-ready-length rows."""
    task = sub["task"].iloc[0]
    rep.h(3, f"{task} ({dev})")
    ready = longest_ready(sub)
    rep.say(
        f"Longest length with ≥{READY:.0%} mean exact match at every length up to it: "
        + ", ".join(f"{d} {'none' if v is None else f'L={v}'}" for d, v in ready.items())
        + ".",
        _at_longest(sub),
    )
    title = f"{task}: quality vs length ({dev}, mean ± std over seeds)"
    panels = TASK_PLOTS.get(task, SEQUENCE_PANELS)
    fig = plots.lines(sub, "length", panels, "decoder", title, logx=True)
    rep.figure(f"quality_{task}_{dev}", fig)
    table = summarise(sub, ["decoder", "length"], QUALITY_METRICS)
    rep.table(f"quality_{task}_{dev}", table, f"{task}: mean ± std over seeds ({dev})")
    return [{"task": task, "decoder": d, "longest_L_ready": v or "none"} for d, v in ready.items()]


def _scan(rep: Report, df: pd.DataFrame, dev: str) -> None:
    if df.empty:
        return
    rep.h(3, f"SCAN ({dev})")
    best = df.groupby(["split", "decoder"])["exact_match"].mean()
    rep.say(
        "Best exact match per split: "
        + "; ".join(
            f"{split}: {best[split].idxmax()} {fmt(best[split].max())}"
            for split in sorted(df["split"].dropna().unique())
        )
        + "."
    )
    rep.table(
        f"scan_{dev}",
        summarise(df, ["split", "decoder"], QUALITY_METRICS),
        f"SCAN by split ({dev})",
    )
    buckets = length_buckets(df)
    if not buckets.empty:
        keys = ["split", "decoder", "lo", "target_len", "n"]  # n: examples in the bucket
        table = summarise(buckets, keys, BUCKET_METRICS).drop(columns="lo")
        caption = f"SCAN by target length ({dev}; the length split tests on longer outputs)"
        rep.table(f"scan_buckets_{dev}", table, caption)


def length_buckets(df: pd.DataFrame) -> pd.DataFrame:
    """Long rows (split, decoder, seed, target_len, lo, n, metrics) from `test_buckets` JSON, whose
    keys are `len{bucket}_{metric}` with buckets like '4-7', '5' or '16+'."""
    rows: dict[tuple, dict] = {}
    for r in df.itertuples():
        for key, value in parse_json(getattr(r, "test_buckets", None), {}).items():
            bucket, metric = key.removeprefix("len").split("_", 1)
            row = rows.setdefault((r.split, r.decoder, r.seed, bucket), {
                "split": r.split, "decoder": r.decoder, "seed": r.seed, "target_len": bucket,
                "lo": int(re.match(r"\d+", bucket).group())})  # fmt: skip
            row[metric] = value
    return pd.DataFrame(list(rows.values()))


def _cost(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Quality vs training cost ({dev})")
    by = df.groupby("decoder")[["train_s", "tokens_per_s", "exact_match"]].mean()
    rep.say(
        "Mean over all cells: "
        + "; ".join(
            f"{d} {fmt(r.train_s)} s per cell, {fmt(r.tokens_per_s)} tokens/s, exact match "
            f"{fmt(r.exact_match)}"
            for d, r in by.iterrows()
        )
        + "."
    )
    rep.figure(
        f"quality_cost_{dev}",
        plots.scatter(
            df, "train_s", "exact_match", "decoder", "task", f"exact match vs training time ({dev})"
        ),
    )
