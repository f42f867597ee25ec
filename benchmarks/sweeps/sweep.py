"""The sweep runner shared by `quality` and `ablations`: cells in, one CSV row per cell out.

A cell is one training run (task x decoder x options x seed x budget). Finished cells are written
atomically (the whole CSV rewritten to a temporary file, then renamed), so a killed sweep loses
nothing already measured; a rerun skips every cell whose `cell_id` is already in the file. An
exception inside a cell (out of memory, NaN loss, bad option) becomes a row with its status, and
the sweep goes on. Cells run on an executor (benchmarks/sweeps/executors.py): `sequential` (in this
process), `local` (a process pool; each worker gets cores/workers torch threads) or `ray`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.checkpoint import atomic_write_bytes

METRIC_COLUMNS = {  # report column -> key in the harness's metric dict
    "bleu1": "bleu1",
    "bleu2": "bleu2",
    "bleu3": "bleu3",
    "bleu4": "bleu4",
    "meteor": "meteor",
    "rouge_l": "rouge_l",
    "cider": "cider",
    "exact_match": "exact_match",
    "token_acc": "token_accuracy",
    "ppl": "perplexity",
    "val_loss": "nll_per_token",
}


@dataclass(frozen=True)
class Cell:
    """One training run. `train` holds TrainConfig fields (budget, decoder options, seed)."""

    sweep: str  # which sweep/ablation the cell belongs to (a CSV may hold several)
    task: str
    task_args: dict[str, Any]
    decoder: str
    train: dict[str, Any]
    label: str = ""  # what varies in an ablation, e.g. "positional=none"
    length: int | None = None  # the length dial, for plots (None for scan splits)
    extra: dict[str, Any] = field(default_factory=dict)  # what to record beyond the metrics

    @property
    def cell_id(self) -> str:
        blob = json.dumps(
            [self.sweep, self.task, self.task_args, self.decoder, self.train, self.label],
            sort_keys=True,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def run_cell(cell: Cell, device: str, threads: int | None = None) -> dict[str, Any]:
    """Train and evaluate one cell; never raises: failures become a row with a status."""
    from benchmarks.timing.devices import environment, resolve_device
    from benchmarks.tasks import load_task
    from benchmarks.harness.train import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    if cell.train.get("meteor", True):
        from benchmarks.harness.metrics import keep_meteor_alive

        keep_meteor_alive()  # one JVM per worker process, not one per cell
    row: dict[str, Any] = {
        "cell_id": cell.cell_id,
        "sweep": cell.sweep,
        "task": cell.task,
        "length": cell.length,
        "split": cell.task_args.get("split"),
        "decoder": cell.decoder,
        "label": cell.label,
        "seed": cell.train.get("seed", 0),
        "task_args": json.dumps(cell.task_args, sort_keys=True),
        "train_cfg": json.dumps(cell.train, sort_keys=True),
    }
    env = environment(resolve_device(device))
    row.update(
        device=device,
        torch=env.get("torch"),
        threads=torch.get_num_threads(),
        git_commit=env.get("git_commit"),
    )
    t0 = time.perf_counter()
    try:
        task = load_task(cell.task, **cell.task_args)
        result = train(task, TrainConfig(decoder=cell.decoder, device=device, **cell.train))
    except Exception as exc:  # noqa: BLE001 - any failure is a result of this cell
        row.update(status=_status(exc), error=_one_line(exc), wall_s=time.perf_counter() - t0)
        return row
    row.update(
        params=result.params,
        steps=result.steps,
        train_s=round(result.train_s, 3),
        tokens_per_s=round(result.tokens_per_s, 1),
    )
    for col, key in METRIC_COLUMNS.items():
        row[col] = result.test.get(key)
    row["val_exact_match"] = result.val.get("exact_match")
    row["test_buckets"] = json.dumps(
        {k: v for k, v in result.test.items() if k.startswith("len")}, sort_keys=True
    )
    row["history"] = json.dumps(result.history)
    row["meteor_missing_reason"] = result.test.get("meteor_missing_reason", "")
    row["tf_token_acc"] = result.test.get("tf_token_accuracy")
    if cell.extra.get("alignment"):
        from benchmarks.sweeps.alignment_stats import alignment_stats

        stats = alignment_stats(result.model, task, resolve_device(device))
        row["alignment_fraction"] = stats["fraction"]
        row["alignment_examples"] = json.dumps(stats["examples"])
    row.update(status="ok", error="", wall_s=round(time.perf_counter() - t0, 3))
    return row


def _status(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return "oom"
    if isinstance(exc, FloatingPointError):
        return "nan"
    return "error"


def _one_line(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{at}"[:300]


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole CSV atomically (columns: the union, in first-seen order)."""
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue().encode()))


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
    from benchmarks.sweeps.executors import get_executor  # it imports this module

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
