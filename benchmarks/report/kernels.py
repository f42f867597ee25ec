"""Report sections built from the timing benchmarks: attention kernels vs N (kernels_<device>.json,
pytest-benchmark JSON) with the compile time of kernels that compile per shape, then their peak
memory (`kernel_memory`), the issue-10 checks (`kernel_checks`), decoding (`decoding`) and
training throughput (`throughput`).

Shapes: B batch, H heads, N sequence length (T = S = N), Dh head width. FLOPs are each kernel's
own count recorded with its timing, nominal (FlashAttention's 4*B*H*N^2*Dh forward, /2 causal,
x3.5 forward+backward, whatever the kernel executes: FLOP_ACCOUNTING says so in the report; none
for additive, which is reported in query-key pairs/s); each kernel's rate
is quoted as a share of the GEMM peak measured in the same run, never of a spec sheet. Times are
pytest-benchmark medians with their IQR and round count.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt, numeric
from benchmarks.report.decoding import decode_steps, decode_totals
from benchmarks.report.kernel_checks import checks_section
from benchmarks.report.kernel_memory import (
    MEMORY_NUMERIC,
    memory_section,
    skipped_section,
    with_allocator,
)
from benchmarks.report.throughput import training

FLOP_ACCOUNTING = (
    "**How FLOPs are counted.** Every FLOP rate and share of the GEMM peak here is *nominal*: "
    "FlashAttention's count (Dao et al. 2022), the same for every kernel whatever it executes: "
    "QKᵀ and PV are 2·N²·Dh each per head, so 4·B·H·N²·Dh forward, half of it when causal, and "
    "3.5× the forward for forward+backward (a backward that recomputes the scores). It is a "
    "common unit of work, not what each kernel does: `dot` computes all N² scores even when "
    "causal (and masks half), and its backward, which keeps the weights instead of recomputing "
    "them, is 2× its forward; so its nominal causal rate is half, and its nominal "
    "forward+backward rate 7/6, of the arithmetic it performs. `chunked` and `flex` skip the "
    "tiles above the diagonal but compute the diagonal tiles whole, and recompute in the "
    "backward. Nominal rates compare kernels on the work the task needs."
)
KERNEL_COLUMNS = "kernel mode causal n b rounds median_ms iqr_ms".split()
KERNEL_NUMERIC = (
    "n b h dh t tokens flops query_key_pairs median_s iqr_s rounds peak_mem_mb batch "
    "compile_s first_call_s"
).split()


def bench_frame(js: dict[str, Any]) -> pd.DataFrame:
    """One row per benchmark: its extra_info, median/IQR seconds and a decoder `variant` label."""
    rows = []
    for b in js.get("benchmarks", []):
        info, stats = dict(b.get("extra_info", {})), b.get("stats", {})
        row = info | {
            "name": b.get("name"),
            "median_s": stats.get("median"),
            "iqr_s": stats.get("iqr"),
            "rounds": stats.get("rounds"),
        }
        if "decoder" in info:
            cache = info.get("use_cache")
            suffix = {True: " (KV cache)", False: " (recompute)"}.get(cache, "")
            row["variant"] = f"{info['decoder']}{suffix}"
        rows.append(row)
    return numeric(pd.DataFrame(rows, columns=sorted({k for r in rows for k in r})), KERNEL_NUMERIC)


def kernels(rep: Report, jsons: dict[str, dict], memory: dict[str, pd.DataFrame]) -> None:
    rep.h(2, "Attention kernels, decoding and training speed")
    if not jsons and not memory:
        rep.say(
            "No `kernels_<device>.json` or `kernel_memory_<device>.csv` in the raw results: "
            "run `python -m benchmarks kernels --profile default --device cpu`."
        )
        return
    for dev in sorted(set(jsons) | set(memory)):
        js = jsons.get(dev, {})
        bench = bench_frame(js) if js else pd.DataFrame(columns=["kind"])
        if "kind" not in bench:
            bench["kind"] = None
        gflop = "tflop_per_s" if dev == "cuda" else "gflop_per_s"
        times = _kernel_times(rep, bench, dev, gflop)
        mem = with_allocator(numeric(memory[dev], MEMORY_NUMERIC)) if dev in memory else None
        skipped_section(rep, js.get("skipped", []), mem, dev)
        if mem is not None:
            memory_section(rep, mem, dev)
        checks_section(rep, times, mem, dev)
        decode_steps(rep, bench[bench["kind"] == "decode_step"], dev)
        decode_totals(rep, bench[bench["kind"] == "decode_total"], dev)
        training(rep, bench, dev)


def _kernel_times(rep: Report, bench: pd.DataFrame, dev: str, unit: str) -> pd.DataFrame:
    """The kernel sections; returns the kernel records (median_s per case) for the checks."""
    rep.h(3, f"Kernel time and throughput vs N ({dev})")
    k = bench[bench["kind"] == "kernel"].copy()
    if k.empty:
        rep.say(f"No kernel timings for {dev}.")
        return pd.DataFrame(columns=["kernel", "n", "mode", "causal", "median_s"])
    gemm = bench[bench["kind"] == "gemm"]
    scale = 1e12 if unit == "tflop_per_s" else 1e9
    peak = float((gemm["flops"] / gemm["median_s"]).max() / scale) if not gemm.empty else None
    k["median_ms"], k["iqr_ms"] = k["median_s"] * 1e3, k["iqr_s"] * 1e3
    k[unit] = k["flops"] / k["median_s"] / scale
    k["pct_gemm_peak"] = 100 * k[unit] / peak if peak else float("nan")
    k["tokens_per_s"] = k["tokens"] / k["median_s"]
    k["mpairs_per_s"] = k["query_key_pairs"] / k["median_s"] / 1e6
    cols = [*KERNEL_COLUMNS, unit, "pct_gemm_peak", "tokens_per_s", "mpairs_per_s"]
    if "peak_mem_mb" in k and k["peak_mem_mb"].notna().any():
        cols.append("peak_mem_mb")  # CUDA: the allocator's peak, measured in the timed process
    k = k.sort_values(["mode", "causal", "kernel", "n"])
    rate = unit.replace("_per_s", "").upper() + "/s"
    rep.say(_peak_reading(bench, gemm, peak, rate))
    rep.say(_kernel_reading(k, unit, rate), _relative_to_sdpa(k))
    rep.say(
        "Tokens per call (B·N) are constant across N, so time grows only through the N² "
        "work; additive attention has no FLOP count and is reported in query-key pairs/s."
    )
    rep.say(FLOP_ACCOUNTING)
    rep.figure(
        f"kernel_time_{dev}",
        plots.facets(
            k, "n", "median_ms", "kernel", "mode", "causal", f"kernel time ({dev})", "median ms"
        ),
    )
    hline = None if peak is None else (peak, "GEMM peak")
    rep.figure(
        f"kernel_throughput_{dev}",
        plots.facets(
            k, "n", unit, "kernel", "mode", "causal", f"kernel throughput ({dev})", rate, hline
        ),
    )
    _kernel_pivots(rep, k, dev)
    rep.table(f"kernels_{dev}", k[cols], f"Every kernel case ({dev}): median over rounds")
    _compile_times(rep, k, dev)
    return k


def _compile_times(rep: Report, k: pd.DataFrame, dev: str) -> None:
    """Kernels that compile per shape: each shape's first call beyond the steady median."""
    if "compile_s" not in k or k["compile_s"].isna().all():
        return
    c = k[k["compile_s"].notna()].sort_values(["kernel", "causal", "mode", "n"])
    rep.say(
        "Compile time, kept apart from the steady-state times above: the first call of each "
        "shape (compiling into an empty cache) minus the median of the timed calls. In total "
        + "; ".join(
            f"{kernel} {fmt(g['compile_s'].sum())} s over {len(g)} cases "
            f"({fmt(g['compile_s'].min())}–{fmt(g['compile_s'].max())} s each)"
            for kernel, g in c.groupby("kernel", sort=True)
        )
        + "."
    )
    cols = ["kernel", "mode", "causal", "n", "b", "compile_s", "first_call_s", "median_ms"]
    c = c.reindex(columns=cols)  # records may lack first_call_s
    rep.table(f"kernel_compile_{dev}", c, f"Compile time per shape ({dev})")


def _peak_reading(bench: pd.DataFrame, gemm: pd.DataFrame, peak: float | None, rate: str) -> str:
    """The GEMM peak the rates are shares of, and how loaded the machine was meanwhile."""
    text = ""
    if peak is not None:
        g = gemm.iloc[0]
        text = (
            f"GEMM peak measured in this run: {fmt(peak)} {rate} ({g.get('dtype', '?')}, "
            f"n={int(g['n'])}, {fmt(g.get('threads'))} threads, allocator "
            f"{g.get('allocator', '?')}); every kernel's rate is a share of it. "
        )
    load = pd.to_numeric(bench.get("load_1m", pd.Series()), errors="coerce").dropna()
    if not load.empty:
        text += (
            f"1-minute load average during the timings: {fmt(load.min())}–{fmt(load.max())} "
            "(other processes sharing the cores make timings noisier)."
        )
    return text.strip()


def _kernel_pivots(rep: Report, k: pd.DataFrame, dev: str) -> None:
    """Compact views for the README: median ms and share of the GEMM peak, kernel x N."""
    views = [("median_ms", "kernel_ms", "Median ms by N"),
             ("pct_gemm_peak", "kernel_peak_pct", "% of the GEMM peak by N")]  # fmt: skip
    for value, name, what in views:
        pivot = k.pivot_table(index=["mode", "causal", "kernel"], columns="n", values=value)
        if pivot.empty:
            continue
        pivot.columns = [f"N={int(n)}" for n in pivot.columns]
        rep.table(f"{name}_{dev}", pivot.reset_index(), f"{what} ({dev})")


def _kernel_reading(k: pd.DataFrame, unit: str, rate: str) -> str:
    """Forward, full attention: each kernel at the largest N it ran."""
    full = k[(k["mode"] == "fwd") & ~k["causal"].astype(bool)]
    if full.empty:
        return ""
    parts = []
    for r in full.loc[full.groupby("kernel")["n"].idxmax()].itertuples():
        part = f"{r.kernel} N={int(r.n)}: {fmt(r.median_ms)} ms"
        if pd.notna(getattr(r, unit)) and pd.notna(r.pct_gemm_peak):
            part += f", {fmt(getattr(r, unit))} {rate} ({fmt(r.pct_gemm_peak)} % of GEMM peak)"
        parts.append(part)
    return "Forward, full attention, at each kernel's largest N: " + "; ".join(parts) + "."


def _relative_to_sdpa(k: pd.DataFrame) -> str:
    """Full attention: time of every other kernel over sdpa's, per mode, at the largest N both
    ran (the causal ratios are in the tables)."""
    parts = []
    for mode, g in k[~k["causal"].astype(bool)].groupby("mode", sort=True):
        t = g.pivot_table(index="n", columns="kernel", values="median_ms", aggfunc="median")
        if "sdpa" not in t:
            continue
        for kernel in (c for c in t.columns if c != "sdpa"):
            both = t[["sdpa", kernel]].dropna()
            if not both.empty:
                n, row = both.index[-1], both.iloc[-1]
                ratio = row[kernel] / row["sdpa"]
                parts.append(f"{kernel} {ratio:.3g}× ({mode}, N={int(n)})")
    text = "Full attention, time over sdpa's at the largest N both ran: "
    return text + "; ".join(parts) + "." if parts else ""
