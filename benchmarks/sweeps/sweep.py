"""The sweep runner shared by `quality` and `ablations`: cells in, one CSV row per cell out.

A cell is one training run (task x decoder x options x seed x budget). Finished cells are written
atomically (the whole CSV rewritten to a temporary file, then renamed), so a killed sweep loses
nothing already measured; a rerun skips every cell whose `cell_id` is already in the file. An
exception inside a cell (out of memory, NaN loss, bad option) becomes a row with its status, and
the sweep goes on. Cells run on an executor (benchmarks/sweeps/executors.py): `sequential` (in this
process), `local` (a process pool; each worker gets cores/workers torch threads) or `ray`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.executors import get_executor
from benchmarks.sweeps.store import read_rows, write_rows


def run_sweep(
    cells: Iterable[Cell],
    out_csv: Path,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run every cell not already in `out_csv` on `executor` (see benchmarks/sweeps/executors.py);
    returns all rows (old and new)."""
    run = get_executor(executor, device, workers, ray_address)  # a bad choice fails before work
    rows = read_rows(out_csv)
    done = {r["cell_id"] for r in rows}
    todo = [c for c in cells if c.cell_id not in done]

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        write_rows(out_csv, rows)
        if on_row:
            on_row(row)

    if todo:
        run(todo, record)
    return rows
