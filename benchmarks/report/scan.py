"""Report section for SCAN (Lake & Baroni, ICML 2018): our splits beside the published figures.

Published exact-match accuracies (paper Table/Fig. for experiments 1 and 2, see
shared reference SCAN.md): the overall-best model (2-layer LSTM, 200 units, no attention,
dropout 0.5) and the best model for each split. Their `simple` split is a random 80/20 draw that
no grammar can regenerate; ours is a seeded 80/20 split of the same 20,910 commands, so the
numbers are comparable in kind, not example for example. Their training: 100,000 single-example
steps; ours: the profile's stopping rule.
"""

from __future__ import annotations

import re

import pandas as pd

from benchmarks.report.base import Report, fmt, parse_json, pm, stop_counts, summarise

PUBLISHED = {  # split -> (overall-best model, best model for the split), exact match
    "simple": ("0.997 (LSTM, no attention)", "0.998 (LSTM, no attention)"),
    "length": ("0.138 (LSTM, no attention)", "0.208 (GRU + attention)"),
}
BUCKET_METRICS = ["exact_match", "token_accuracy", "nll"]


def scan(rep: Report, df: pd.DataFrame, dev: str) -> None:
    if df.empty:
        return
    rep.h(3, f"SCAN ({dev})")
    rows = []
    for (split, dec), g in df.groupby(["split", "decoder"], sort=True):
        published = PUBLISHED.get(split, ("–", "–"))
        rows.append(
            {"split": split, "decoder": dec, "seeds": len(g), "exact_match": pm(g["exact_match"]),
             "stops": stop_counts(g["stop_reason"]), "steps": g["steps"].mean(),
             "Lake & Baroni overall-best": published[0],
             "Lake & Baroni best for split": published[1]}
        )  # fmt: skip
    best = df[df["converged"]].groupby(["split", "decoder"])["exact_match"].mean()
    rep.say(
        "Best converged exact match per split: "
        + "; ".join(
            f"{split}: {best[split].idxmax()} {fmt(best[split].max())} "
            f"(published best {PUBLISHED.get(split, ('', '–'))[1]})"
            for split in sorted(best.index.get_level_values(0).unique())
        )
        + ". Our `simple` split is our own seeded 80/20 draw."
    )
    rep.table(f"scan_{dev}", pd.DataFrame(rows), f"SCAN vs Lake & Baroni 2018 ({dev})")
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
