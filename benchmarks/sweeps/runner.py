"""The `make bench` job per device: tuning, quality sweep, ablations, kernel timings, report.

`all` regenerates from scratch unless a previous `all` on this device was interrupted (its
marker file is still there): then every finished cell is kept and only the rest runs. The
quality and ablation sweeps read each decoder's learning rate and warm-up from the tuning CSV
written first. Files in results/raw carry the device in their names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.files import write_json
from benchmarks.sweeps.ablations import ablation_cells, scaling_init_rows
from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.profiles import get_profile
from benchmarks.sweeps.progress import SweepProgress
from benchmarks.sweeps.quality import quality_cells
from benchmarks.sweeps.store import read_rows, write_rows
from benchmarks.sweeps.sweep import run_sweep
from benchmarks.sweeps.tuning import tuning_cells
from benchmarks.timing.devices import device_tag, environment, resolve_device

Log = Callable[[str], None]
SWEEP_FILES = ("tuning", "quality", "ablations")  # raw CSVs that `all` regenerates


def expected_cost(cell: Cell) -> float:
    """A rough rank of a cell's run time: target tokens per example, images costlier. Sweeps
    start the longest cells first, so two workers do not end with one long cell on one core."""
    length = cell.length or 24  # SCAN: actions per command, 1..48
    return (length + 1) * (4 if cell.task == "digits" else 1) * (2 if cell.decoder != "rnn" else 1)


def _sweep(phase: str, cells: list[Cell], out: Path, device: str, **ex: Any) -> Path:
    """Run `cells` into `out` (resuming what is there), longest first, behind a progress display."""
    cells = sorted(cells, key=expected_cost, reverse=True)
    finished = {r.get("cell_id") for r in read_rows(out)}
    progress = SweepProgress(phase, len(cells), sum(c.cell_id in finished for c in cells))
    try:
        run_sweep(cells, out, device=device, on_row=progress, **ex)
    finally:
        progress.close()
    return out


def run_tuning(raw: Path, profile: str, device: str, log: Log, **ex: Any) -> Path:
    out = raw / f"tuning_{device_tag(device)}.csv"
    return _sweep("tuning", tuning_cells(get_profile(profile)), out, device, **ex)


def _tuning_csv(raw: Path, device: str, log: Log) -> Path | None:
    path = raw / f"tuning_{device_tag(device)}.csv"
    if path.exists():
        return path
    log(f"no {path}: learning rates and warm-ups are the registry defaults (run `tune` first)")
    return None


def run_quality(raw: Path, profile: str, device: str, log: Log, **ex: Any) -> Path:
    cells = quality_cells(get_profile(profile), _tuning_csv(raw, device, log))
    return _sweep("quality", cells, raw / f"quality_{device_tag(device)}.csv", device, **ex)


def run_ablations(raw: Path, profile: str, device: str, log: Log, **ex: Any) -> list[Path]:
    cells = ablation_cells(get_profile(profile), _tuning_csv(raw, device, log))
    out = _sweep("ablations", cells, raw / f"ablations_{device_tag(device)}.csv", device, **ex)
    init = raw / f"scaling_init_{device_tag(device)}.csv"
    write_rows(init, scaling_init_rows())
    return [out, init]


def run_all(
    raw: Path, results: Path, profile: str, device: str, log: Log, **ex: Any
) -> dict[str, float]:
    """Every phase in order; returns seconds per phase (also written beside the raw data)."""
    from benchmarks.report.build import build_report
    from benchmarks.timing.run import run_kernels

    get_profile(profile)  # fail before any work on a bad profile or device
    resolve_device(device)
    raw.mkdir(parents=True, exist_ok=True)
    marker = raw / f".in_progress_{device_tag(device)}"
    if not marker.exists():  # a fresh run: regenerate rather than resume old results
        for kind in SWEEP_FILES:
            (raw / f"{kind}_{device_tag(device)}.csv").unlink(missing_ok=True)
    marker.write_text(profile + "\n")
    write_json(
        raw / f"env_{device_tag(device)}.json",
        environment(resolve_device(device)) | {"profile": profile},
    )
    timing: dict[str, float] = {}
    t_all = time.perf_counter()
    for phase, fn in (
        ("tuning", lambda: run_tuning(raw, profile, device, log, **ex)),
        ("quality", lambda: run_quality(raw, profile, device, log, **ex)),
        ("ablations", lambda: run_ablations(raw, profile, device, log, **ex)),
        ("kernels", lambda: run_kernels(device, profile, raw)),
    ):
        log(f"== {phase}")
        t0 = time.perf_counter()
        fn()
        timing[phase] = round(time.perf_counter() - t0, 1)
    timing["total_before_report"] = round(time.perf_counter() - t_all, 1)
    write_json(raw / f"bench_timing_{device_tag(device)}.json", timing)
    marker.unlink()
    log("== report")
    t0 = time.perf_counter()
    build_report(raw, results)
    log(f"report: {time.perf_counter() - t0:.1f} s")
    return timing
