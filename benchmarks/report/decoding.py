"""Report sections from the decoding benchmarks (kernels_<device>.json): the latency of one
`step` after t-1 tokens, with and without the Transformer's KV cache, and whole decodes.

Shapes: t decode prefix length, T tokens decoded. Times are pytest-benchmark medians.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt


def decode_steps(rep: Report, d: pd.DataFrame, dev: str) -> None:
    if d.empty:
        return
    rep.h(3, f"Decoding latency per token ({dev})")
    d = d.assign(per_token_ms=d["median_s"] * 1e3)
    top = d[d["t"] == d["t"].max()].sort_values("variant")
    rep.say(
        f"One `step` for a batch of {int(d['batch'].max())} sequences after t-1 earlier steps; "
        f"at t={int(d['t'].max())}: "
        + ", ".join(f"{r.variant} {fmt(r.per_token_ms)} ms" for r in top.itertuples())
        + "."
    )
    table = d.pivot_table(index="variant", columns="t", values="per_token_ms", aggfunc="median")
    table.columns = [f"t={int(t)} ms" for t in table.columns]
    rep.figure(
        f"decode_step_{dev}",
        plots.lines(
            d,
            "t",
            [("per_token_ms", "ms per step (batch)")],
            "variant",
            f"one decode step after t-1 tokens ({dev})",
            logx=True,
            logy=True,
        ),
    )
    rep.table(f"decode_step_{dev}", table.reset_index(), f"Per-step latency, ms ({dev})")

    def per_step(suffix: str) -> pd.DataFrame:
        return d[d["variant"].str.endswith(suffix)][["decoder", "t", "per_token_ms"]]

    kv = per_step("(KV cache)").merge(per_step("(recompute)"), on=["decoder", "t"])
    kv.columns = ["decoder", "t", "cached_ms", "recompute_ms"]
    kv["recompute_over_cached"] = kv["recompute_ms"] / kv["cached_ms"]
    if not kv.empty:
        kv = kv.sort_values(["decoder", "t"])
        last = kv.iloc[-1]
        rep.say(
            f"At t={int(last.t)} one {last.decoder} step recomputing the prefix takes "
            f"{fmt(last.recompute_ms)} ms, {last.recompute_over_cached:.3g}× the KV-cached "
            f"step ({fmt(last.cached_ms)} ms)."
        )
        rep.table(f"kv_cache_{dev}", kv, f"KV cache vs recompute ({dev})")


def decode_totals(rep: Report, d: pd.DataFrame, dev: str) -> None:
    if d.empty:
        return
    d = d.assign(
        total_ms=d["median_s"] * 1e3,
        per_token_ms=d["median_s"] * 1e3 / d["t"],
        tokens_per_s=d["batch"] * d["t"] / d["median_s"],
    ).sort_values("variant")
    rep.table(
        f"decode_total_{dev}",
        d[["variant", "t", "batch", "total_ms", "per_token_ms", "tokens_per_s"]],
        f"Decoding T tokens from scratch ({dev})",
    )
