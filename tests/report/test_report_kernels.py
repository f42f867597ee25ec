"""The kernel report: issue 10's checks, the compile-time table and the memory model's ratio,
each computed from small synthetic raw files whose expected values are worked out here by hand.

Shapes: N sequence length (T = S = N), B = 4096 // N sequences per call, H=4, Dh=64.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.report.build import build_report
from benchmarks.report.kernel_checks import kernel_checks
from benchmarks.report.kernel_memory import with_allocator

BASE = {"device": "cpu", "torch": "2.13.0+cpu", "threads": 2, "git_commit": "abc123", "seed": 0}
TIMES = {  # (kernel, n, mode, causal) -> median seconds
    ("chunked", 2048, "fwd", False): 0.10, ("chunked", 2048, "fwd", True): 0.06,  # 0.6: holds
    ("chunked", 2048, "fwd_bwd", False): 0.30, ("chunked", 2048, "fwd_bwd", True): 0.21,  # 0.7
    ("sdpa", 4096, "fwd", False): 0.08, ("chunked", 4096, "fwd", False): 0.10,  # speed 0.8
    ("sdpa", 4096, "fwd_bwd", False): 0.30, ("chunked", 4096, "fwd_bwd", False): 0.75,  # 0.4
    ("sdpa", 16384, "fwd", False): 1.0, ("chunked", 16384, "fwd", False): 1.6,  # 0.625
    ("chunked", 16384, "fwd", True): 0.8,  # causal 0.5: holds
    ("sdpa", 16384, "fwd_bwd", False): 4.0,  # chunked fwd_bwd at 16384 not measured
    ("flex", 4096, "fwd", False): 0.2, ("flex", 4096, "fwd", True): 0.1,
}  # fmt: skip
MEMORY = [  # kernel, n, mode, allocator, status, measured MiB, predicted MiB
    ("chunked", 8192, "fwd_bwd", "glibc", "ok", 40.0, 42.0),
    ("chunked", 16384, "fwd_bwd", "glibc", "ok", 80.0, 76.0),  # 2.0x its 8192 peak
    ("chunked", 16384, "fwd_bwd", "glibc-returned", "ok", 200.0, 76.0),  # not the checks' regime
    ("dot", 16384, "fwd_bwd", "glibc", "skipped", None, 12800.0),  # 80 / 12800 = 0.625 %
    ("dot", 1024, "fwd_bwd", "glibc", "ok", 150.0, 200.0),  # 0.75: outside 20 %
    ("additive", 2048, "fwd", "glibc", "ok", 260.0, 260.0),
    ("additive", 2048, "fwd_bwd", "glibc", "ok", 404.0, 400.0),
    ("flex", 4096, "fwd", "glibc", "ok", 4.2, 4.0),
]


def _record(kernel: str, n: int, mode: str, causal: bool, median: float) -> dict:
    b = max(1, 4096 // n)
    flops = None if kernel == "additive" else 4.0 * b * 4 * n * n * 64 * (0.5 if causal else 1)
    info = {"kind": "kernel", "kernel": kernel, "n": n, "b": b, "h": 4, "dh": 64, "mode": mode,
            "causal": causal, "flops": flops, "tokens": b * n, "query_key_pairs": b * 4 * n * n,
            **BASE}  # fmt: skip
    if kernel == "flex":
        info |= {"compile_s": 3.0 * (2 if causal else 1), "first_call_s": 3.0 + median}
    return {"name": f"test_kernel[{kernel}-n{n}]", "group": "kernel", "extra_info": info,
            "stats": {"median": median, "iqr": median / 10, "rounds": 1}}  # fmt: skip


def _memory_rows() -> list[dict]:
    return [{"kernel": k, "n": n, "b": max(1, 4096 // n), "h": 4, "dh": 64, "causal": False,
             "mode": mode, "allocator": alloc, "peak_mem_mb": "" if mb is None else mb,
             "predicted_mem_mb": pred, "status": status, "reason": "", "dtype": "float32", **BASE}
            for k, n, mode, alloc, status, mb, pred in MEMORY]  # fmt: skip


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kernels")
    (root / "raw").mkdir()
    benches = [_record(*key, median) for key, median in TIMES.items()]
    (root / "raw" / "kernels_cpu.json").write_text(json.dumps({"benchmarks": benches}))
    rows = _memory_rows()
    with (root / "raw" / "kernel_memory_cpu.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    build_report(root / "raw", root / "out")
    return root / "out"


def _check(out: Path, *words: str) -> str:
    rows = [r for r in (out / "tables" / "kernel_checks_cpu.md").read_text().splitlines()
            if all(w in r for w in words)]  # fmt: skip
    assert len(rows) == 1, (words, rows)
    return rows[0]


def test_kernel_checks_causal_over_non_causal_time(out: Path) -> None:
    row = _check(out, "causal / non-causal", "| 2,048 | fwd |")
    assert row.endswith("| 0.600 | ≤ 0.65 | yes | measured |")
    assert "| 0.700 | ≤ 0.65 | no |" in _check(out, "causal / non-causal", "| 2,048 | fwd_bwd |")
    assert "| 0.500 | ≤ 0.65 | yes |" in _check(out, "causal / non-causal", "| 16,384 | fwd |")


def test_kernel_checks_chunked_speed_over_sdpa(out: Path) -> None:
    assert "| 0.800 | ≥ 0.5 | yes |" in _check(out, "sdpa speed", "| 4,096 | fwd |")
    assert "| 0.400 | ≥ 0.5 | no |" in _check(out, "sdpa speed", "| 4,096 | fwd_bwd |")
    assert "| 0.625 | ≥ 0.5 | yes |" in _check(out, "sdpa speed", "| 16,384 | fwd |")
    assert "| – | ≥ 0.5 | not measured |" in _check(out, "sdpa speed", "| 16,384 | fwd_bwd |")


def test_kernel_checks_memory_claims_label_a_predicted_dot(out: Path) -> None:
    share = _check(out, "peak / dot's")
    assert "| 0.00625 | ≤ 5% | yes | chunked measured, dot predicted (12,800 MiB) |" in share
    assert "| 2.000 | ≤ 2.2 | yes |" in _check(out, "N=16384 / at N=8192")  # glibc rows only
    assert "| 404.0 | ≤ 2,048 | yes |" in _check(out, "additive peak", "fwd_bwd")


def test_kernel_checks_memory_model_worst_row_per_kernel_and_regime(out: Path) -> None:
    assert "| 1,024 | fwd_bwd | 0.750 | within 20% | no | glibc |" in _check(out, "dot measured")
    returned = _check(out, "chunked measured", "glibc-returned")
    assert "| 2.632 | within 20% | no |" in returned  # 200 / 76
    assert "| 16,384 | fwd_bwd | 1.053 | within 20% | yes | glibc |" in _check(
        out, "chunked measured", "| glibc |"
    )  # 80/76 is farther from 1 than 40/42
    table = (out / "tables" / "kernel_memory_cpu.md").read_text()
    assert "measured/predicted |" in table.splitlines()[2]
    assert "| flex | fwd | 4,096 | 1 | glibc | 4.200 | 4.000 | 1.050 |" in table


def test_kernel_report_states_checks_and_compile_time(out: Path) -> None:
    readme = (out / "README.md").read_text()
    assert "11 of 16 checks hold, 4 fail, 1 not measured" in readme
    assert "chunked causal / non-causal time at N=2048 fwd: 0.600 (≤ 0.65: yes)" in readme
    compile_table = (out / "tables" / "kernel_compile_cpu.md").read_text()
    assert "| flex | fwd | True | 4,096 | 1 | 6.000 | 3.100 | 100.0 |" in compile_table
    assert "flex 9.000 s over 2 cases (3.000–6.000 s each)" in readme
    for name in ("kernel_ms_cpu", "kernels_cpu"):
        assert "| flex |" in (out / "tables" / f"{name}.md").read_text()


def test_kernel_checks_without_memory_keep_the_timing_checks() -> None:
    times = pd.DataFrame(
        [{"kernel": k, "n": n, "mode": m, "causal": c, "median_s": t}
         for (k, n, m, c), t in TIMES.items()]
    )  # fmt: skip
    table = kernel_checks(times, None)
    assert set(table["check"].str.split().str[1]) == {"causal", "speed"}
    mem = with_allocator(pd.DataFrame(_memory_rows()).assign(
        peak_mem_mb=lambda d: pd.to_numeric(d["peak_mem_mb"])))  # fmt: skip
    assert len(kernel_checks(times, mem)) == len(table) + 4 + 5  # 4 claims + 5 kernel x regime
