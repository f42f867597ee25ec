"""The `make bench` job: quality sweep, ablations, kernel timings and the report, per device.

`all` regenerates from scratch unless a previous `all` on this device was interrupted (its
marker file is still there): then every finished cell is kept and only the rest runs. Files in
results/raw carry the device in their names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.files import write_json
from benchmarks.sweeps.ablations import ablation_cells, scaling_init_rows
from benchmarks.sweeps.quality import get_profile, quality_cells
from benchmarks.sweeps.store import write_rows
from benchmarks.sweeps.sweep import run_sweep
from benchmarks.timing.devices import environment, resolve_device


def run_quality(
    raw: Path, profile: str, device: str, log: Callable[[str], None], **ex: Any
) -> Path:
    out = raw / f"quality_{device}.csv"
    cells = quality_cells(get_profile(profile))
    run_sweep(cells, out, device=device, on_row=lambda r: log(_row_line(r, len(cells))), **ex)
    return out


def run_ablations(
    raw: Path, profile: str, device: str, log: Callable[[str], None], **ex: Any
) -> list[Path]:
    out = raw / f"ablations_{device}.csv"
    cells = ablation_cells(get_profile(profile))
    run_sweep(cells, out, device=device, on_row=lambda r: log(_row_line(r, len(cells))), **ex)
    init = raw / f"scaling_init_{device}.csv"
    write_rows(init, scaling_init_rows())
    return [out, init]


def _row_line(row: dict[str, Any], total: int) -> str:
    dial = row.get("length") or row.get("label")
    what = f"{row.get('sweep')} {row.get('task')} L={dial} {row.get('decoder')}"
    if row.get("status") != "ok":
        return f"[{total} cells] {what}: {row.get('status')} {row.get('error', '')}"
    return (
        f"[{total} cells] {what} seed={row.get('seed')}: "
        f"exact_match={float(row['exact_match']):.3f} "
        f"train {float(row['train_s']):.1f}s"
    )


def run_all(
    raw: Path, results: Path, profile: str, device: str, log: Callable[[str], None], **ex: Any
) -> dict[str, float]:
    """Every phase in order; returns seconds per phase (also written beside the raw data)."""
    from benchmarks.report.build import build_report
    from benchmarks.timing.kernels import run_kernels

    resolve_device(device)  # fail before any work if the device is missing
    raw.mkdir(parents=True, exist_ok=True)
    marker = raw / f".in_progress_{device}"
    if not marker.exists():  # a fresh run: regenerate rather than resume old results
        for name in (f"quality_{device}.csv", f"ablations_{device}.csv"):
            (raw / name).unlink(missing_ok=True)
    marker.write_text(profile + "\n")
    write_json(
        raw / f"env_{device}.json", environment(resolve_device(device)) | {"profile": profile}
    )
    timing: dict[str, float] = {}
    t_all = time.perf_counter()
    for phase, fn in (
        ("quality", lambda: run_quality(raw, profile, device, log, **ex)),
        ("ablations", lambda: run_ablations(raw, profile, device, log, **ex)),
        ("kernels", lambda: run_kernels(device, profile, raw)),
    ):
        log(f"== {phase}")
        t0 = time.perf_counter()
        fn()
        timing[phase] = round(time.perf_counter() - t0, 1)
    timing["total_before_report"] = round(time.perf_counter() - t_all, 1)
    write_json(raw / f"bench_timing_{device}.json", timing)
    marker.unlink()
    log("== report")
    build_report(raw, results)
    return timing
