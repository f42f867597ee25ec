"""Report sections from kernel_memory_<device>.csv: each kernel's peak memory against its own
model's prediction, per allocator regime, and every kernel case skipped or failed, with why.

Shapes: B batch, N sequence length (T = S = N). CPU peaks are VmHWM above the inputs in a fresh
process; `allocator` is glibc's defaults (freed blocks kept for reuse) or `glibc-returned`
(every freed block returned to the OS). CSVs written before that column read as one regime.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt

RETURNED = "-returned"  # allocator suffix of the freed-memory-returned regime
MEMORY_NUMERIC = ["n", "b", "peak_mem_mb", "predicted_mem_mb"]


def with_allocator(mem: pd.DataFrame) -> pd.DataFrame:
    """The memory rows with an `allocator` column (older CSVs: 'default') and the ratio
    `measured/predicted` of every measured row."""
    mem = mem.copy()
    if "allocator" not in mem:
        mem["allocator"] = "default"
    mem["allocator"] = mem["allocator"].fillna("default").astype(str)
    mem["measured/predicted"] = mem["peak_mem_mb"] / mem["predicted_mem_mb"]
    return mem


def default_regime(mem: pd.DataFrame) -> pd.DataFrame:
    """The rows measured under the allocator's defaults (what the issue's checks use)."""
    return mem[~mem["allocator"].str.endswith(RETURNED)]


def memory_section(rep: Report, mem: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Kernel peak memory vs N ({dev})")
    ok = mem[mem["status"] == "ok"].sort_values(["allocator", "mode", "kernel", "n"])
    if ok.empty:
        rep.say(f"No kernel memory measurement succeeded on {dev}.")
        return
    warmed = (
        ", after a warm-up call and one small GEMM (BLAS's workspace is the process's, not the "
        "call's)"
    )
    where = (
        f"the allocator's peak{warmed}"
        if dev == "cuda"
        else f"VmHWM in a fresh process{warmed}, with glibc's freed blocks trimmed first"
    )
    base = default_regime(ok)
    at = base.loc[base.groupby(["mode", "kernel"])["n"].idxmax()]
    rep.say(
        f"Peak memory above the inputs ({where}); at each kernel's largest measured N: "
        + "; ".join(
            f"{r.kernel} {r.mode} N={int(r.n)}: {fmt(r.peak_mem_mb)} MiB "
            f"(predicted {fmt(r.predicted_mem_mb)})"
            for r in at.itertuples()
        )
        + ".",
        _model_reading(ok),
    )
    rep.figure(
        f"kernel_memory_{dev}",
        plots.lines(
            base, "n", [("peak_mem_mb", "peak MiB above inputs")], "kernel",
            f"kernel peak memory ({dev})", style="mode", logx=True, logy=True,
        ),
    )  # fmt: skip
    cols = ["kernel", "mode", "n", "b", "allocator", "peak_mem_mb", "predicted_mem_mb"]
    rep.table(
        f"kernel_memory_{dev}",
        ok[[*cols, "measured/predicted"]],
        f"Kernel peak memory, measured and predicted by each kernel's model ({dev})",
    )


def _model_reading(ok: pd.DataFrame) -> str:
    """How far each kernel's memory model is from measurement, at worst, per regime."""
    parts = []
    for (alloc, kernel), g in ok.groupby(["allocator", "kernel"], sort=True):
        worst = g.loc[(g["measured/predicted"] - 1).abs().idxmax()]
        parts.append(
            f"{kernel} ({alloc}) {fmt(worst['measured/predicted'])} at N={int(worst['n'])} "
            f"{worst['mode']}"
        )
    return "Measured/predicted, the worst case of each kernel: " + "; ".join(parts) + "."


def skipped_section(
    rep: Report, skipped: list[dict], memory: pd.DataFrame | None, dev: str
) -> None:
    rows = [
        {"what": "timing", "case": s.get("name", "?"), "status": "skipped",
         "reason": s.get("reason", "")}
        for s in skipped
    ]  # fmt: skip
    if memory is not None and not memory.empty:
        bad = memory[memory["status"] != "ok"]
        rows += [
            {"what": "memory", "case": f"{r.kernel}-n{r.n}-{r.mode} ({r.allocator})",
             "status": r.status, "reason": r.reason}
            for r in bad.itertuples()
        ]  # fmt: skip
    if rows:
        rep.table(
            f"kernels_skipped_{dev}",
            pd.DataFrame(rows).sort_values(["what", "case"]),
            f"Skipped or failed kernel cases ({dev}), with the reason",
        )
    else:
        rep.say(f"No kernel case was skipped on {dev}.")
