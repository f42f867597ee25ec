"""The attention-kernel claims of issue 10, each computed from the measured data of one run.

Times are the medians of kernels_<device>.json (one pytest-benchmark run, so ratios compare like
with like); peaks come from kernel_memory_<device>.csv under the allocator's defaults. A peak that
was not measured (dot past its memory cap) is the kernel's own predicted peak from the same CSV,
and says so. A check whose data is missing says "not measured", never "holds".
Shapes: N sequence length (T = S = N), at constant tokens per call.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report.base import Report, fmt
from benchmarks.report.kernel_memory import default_regime

CAUSAL_MAX = 0.65  # chunked causal time / its own non-causal time, at N >= CAUSAL_FROM
CAUSAL_FROM = 2048
SPEED_MIN = 0.5  # chunked speed / sdpa speed (sdpa time / chunked time), non-causal
SPEED_NS = (4096, 16384)
LONG_N, HALF_N = 16384, 8192
DOT_SHARE_MAX = 0.05  # chunked fwd+bwd peak / dot's, at LONG_N
GROWTH_MAX = 2.2  # chunked fwd+bwd peak at LONG_N / at HALF_N
ADDITIVE_N, ADDITIVE_MAX_MB = 2048, 2048.0  # additive's peak at N=2048 within 2 GiB
MODEL_TOL = 0.2  # |measured / predicted - 1| for every measured row of a kernel
COLUMNS = ["check", "n", "mode", "value", "bound", "holds", "basis"]


def _row(check: str, n: object, mode: str, value: float | None, bound: str, ok: bool | None,
         basis: str = "measured") -> dict:  # fmt: skip
    missing = value is None or pd.isna(value)
    holds = "not measured" if missing else "yes" if ok else "no"
    row = [check, n, mode, value, bound, holds, "" if missing else basis]
    return dict(zip(COLUMNS, row, strict=True))


def _median(t: pd.DataFrame, kernel: str, n: int, mode: str, causal: bool) -> float | None:
    hit = t[(t["kernel"] == kernel) & (t["n"] == n) & (t["mode"] == mode)
            & (t["causal"].astype(bool) == causal)]  # fmt: skip
    return None if hit.empty else float(hit["median_s"].median())


def _causal(t: pd.DataFrame) -> list[dict]:
    rows = []
    chunked = t[(t["kernel"] == "chunked") & (t["n"] >= CAUSAL_FROM)]
    for mode, n in sorted({(r.mode, int(r.n)) for r in chunked.itertuples()}):
        causal, full = (_median(t, "chunked", n, mode, c) for c in (True, False))
        if causal is not None and full is not None:
            value = causal / full
            rows.append(_row("chunked causal / non-causal time", n, mode, value,
                             f"≤ {CAUSAL_MAX}", value <= CAUSAL_MAX))  # fmt: skip
    return rows


def _speed(t: pd.DataFrame) -> list[dict]:
    rows = []
    for n in SPEED_NS:
        for mode in ("fwd", "fwd_bwd"):
            sdpa, chunked = (_median(t, k, n, mode, False) for k in ("sdpa", "chunked"))
            value = sdpa / chunked if sdpa and chunked else None
            ok = value is not None and value >= SPEED_MIN
            rows.append(_row("chunked speed / sdpa speed (non-causal)", n, mode, value,
                             f"≥ {SPEED_MIN}", ok))  # fmt: skip
    return rows


def _peak(mem: pd.DataFrame, kernel: str, n: int, mode: str) -> tuple[float | None, str]:
    """(MiB, 'measured' | 'predicted') of one non-causal case; measured when there is one."""
    hit = mem[(mem["kernel"] == kernel) & (mem["n"] == n) & (mem["mode"] == mode)]
    ok = hit[hit["status"] == "ok"]["peak_mem_mb"].dropna()
    if not ok.empty:
        return float(ok.iloc[0]), "measured"
    pred = hit["predicted_mem_mb"].dropna()
    return (float(pred.iloc[0]), "predicted") if not pred.empty else (None, "")


def _measured(mem: pd.DataFrame, kernel: str, n: int, mode: str) -> float | None:
    peak, how = _peak(mem, kernel, n, mode)
    return peak if how == "measured" else None


def _memory(mem: pd.DataFrame) -> list[dict]:
    mem = default_regime(mem)
    long, half = (_measured(mem, "chunked", n, "fwd_bwd") for n in (LONG_N, HALF_N))
    dot, dot_how = _peak(mem, "dot", LONG_N, "fwd_bwd")
    share = long / dot if long is not None and dot else None
    growth = long / half if long is not None and half else None
    rows = [
        _row("chunked fwd+bwd peak / dot's", LONG_N, "fwd_bwd", share, f"≤ {DOT_SHARE_MAX:.0%}",
             share is not None and share <= DOT_SHARE_MAX,
             f"chunked measured, dot {dot_how} ({fmt(dot)} MiB)"),
        _row(f"chunked fwd+bwd peak at N={LONG_N} / at N={HALF_N}", LONG_N, "fwd_bwd", growth,
             f"≤ {GROWTH_MAX}", growth is not None and growth <= GROWTH_MAX),
    ]  # fmt: skip
    for mode in ("fwd", "fwd_bwd"):
        peak = _measured(mem, "additive", ADDITIVE_N, mode)
        rows.append(_row("additive peak MiB", ADDITIVE_N, mode, peak, f"≤ {ADDITIVE_MAX_MB:,.0f}",
                         peak is not None and peak <= ADDITIVE_MAX_MB))  # fmt: skip
    return rows


def _models(mem: pd.DataFrame) -> list[dict]:
    """Per kernel and allocator regime: the measured row farthest from its prediction."""
    rows = []
    ok = mem[(mem["status"] == "ok") & mem["measured/predicted"].notna()]
    for (kernel, alloc), g in ok.groupby(["kernel", "allocator"], sort=True):
        worst = g.loc[(g["measured/predicted"] - 1).abs().idxmax()]
        ratio = float(worst["measured/predicted"])
        rows.append(_row(f"{kernel} measured / predicted peak (worst row)", int(worst["n"]),
                         worst["mode"], ratio, f"within {MODEL_TOL:.0%}",
                         abs(ratio - 1) <= MODEL_TOL, alloc))  # fmt: skip
    return rows


def kernel_checks(times: pd.DataFrame, mem: pd.DataFrame | None) -> pd.DataFrame:
    """One row per claim: its value from this run's data, the bound, and whether it holds.

    `times`: kernel records with kernel, n, mode, causal, median_s; `mem`: memory rows with
    allocator and measured/predicted (`kernel_memory.with_allocator`), or None."""
    rows = _causal(times) + _speed(times)
    if mem is not None and not mem.empty:
        rows += _memory(mem) + _models(mem)
    return pd.DataFrame(rows, columns=COLUMNS)


def checks_section(rep: Report, times: pd.DataFrame, mem: pd.DataFrame | None, dev: str) -> None:
    table = kernel_checks(times, mem)
    if table.empty:
        return
    rep.h(3, f"Issue-10 checks, computed from this run ({dev})")
    counts = table["holds"].value_counts()
    if dev != "cpu":
        rep.say(
            "The issue sets these bounds for the CPU; they are computed here the same way, for "
            "comparison. `chunked` is tiling written in PyTorch, one launch per tile operation, "
            "against fused kernels."
        )
    rep.say(
        f"{counts.get('yes', 0)} of {len(table)} checks hold, {counts.get('no', 0)} fail, "
        f"{counts.get('not measured', 0)} not measured: "
        + "; ".join(
            f"{r.check} at N={r.n} {r.mode}: {fmt(r.value)} ({r.bound}: {r.holds})"
            for r in table.itertuples()
        )
        + "."
    )
    rep.table(f"kernel_checks_{dev}", table, f"Issue-10 checks ({dev})")
