"""The sweep runner shared by `quality` and `ablations`: cells in, one CSV row per cell out.

A cell is one training run (task x decoder x options x seed x budget). Finished cells are written
atomically (the whole CSV rewritten to a temporary file, then renamed), so a killed sweep loses
nothing already measured; a rerun skips every cell with a usable row in the file, and reruns the
cells whose rows are damaged (benchmarks/sweeps/store.py), which the next write then replaces. An
exception inside a cell (out of memory, NaN loss, bad option) becomes a row with its status, and
the sweep goes on. Cells run on an executor (benchmarks/sweeps/executors.py): `sequential` (in this
process), `local` (a process pool; each worker gets cores/workers torch threads) or `ray`.
Ctrl-C raises `SweepInterrupted`, which says how far the sweep got.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.executors import get_executor
from benchmarks.sweeps.store import read_sweep, write_rows


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: `done` of its `total` cells have a row in the CSV."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"{done} of {total} cells done")
        self.done, self.total = done, total


def run_sweep(
    cells: Iterable[Cell],
    out_csv: Path,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run every cell without a usable row in `out_csv` on `executor` (see
    benchmarks/sweeps/executors.py); returns all usable rows (old and new)."""
    run = get_executor(executor, device, workers, ray_address)  # a bad choice fails before work
    cells = list(cells)
    rows, _damaged = read_sweep(out_csv)  # damaged rows are left out: the next write drops them
    done = {r["cell_id"] for r in rows}
    todo = [c for c in cells if c.cell_id not in done]
    finished = len(cells) - len(todo)

    def record(row: dict[str, Any]) -> None:
        nonlocal finished
        rows.append(row)
        write_rows(out_csv, rows)
        finished += 1
        if on_row:
            on_row(row)

    try:
        if todo:
            run(todo, record)
    except KeyboardInterrupt:
        raise SweepInterrupted(finished, len(cells)) from None
    return rows
