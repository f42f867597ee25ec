"""A sweep cell (one training run: task x decoder x options x seed x budget) and its row.

Every row of every sweep CSV has the same identity columns (`identity_row`), whether the cell
finished, raised, or lost its worker (`failed_row`), so the failed-cells table and a resume can
read any row. `run_cell` never raises: a failure is the cell's result, kept as a row with a status.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from models.errors import one_line

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


def identity_row(cell: Cell, device: str) -> dict[str, Any]:
    """The columns every row carries, known before the cell runs."""
    return {
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
        "device": device,
    }


# what every executor (executors.py, ray_executor.py) shares
Record = Callable[[dict[str, Any]], None]  # the sweep's atomic row write, on the driver
CellFn = Callable[[Cell, str, int | None], dict[str, Any]]  # (cell, device, threads) -> row
RETRIES = 1  # a cell whose worker died runs once more; a second death is the cell's own result


def failed_row(cell: Cell, device: str, status: str, error: str) -> dict[str, Any]:
    """The row of a cell that produced no result of its own (it raised, or its worker died)."""
    return identity_row(cell, device) | {"status": status, "error": error[:300]}


def status_of(exc: BaseException) -> str:
    """`oom`, `nan` (non-finite loss) or `error`: what the report groups failures by."""
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return "oom"
    if isinstance(exc, FloatingPointError):
        return "nan"
    return "error"


@functools.lru_cache(maxsize=2)
def _cached_task(name: str, args_json: str) -> Any:
    """The decoders of one (task, length, seed) train on the same data: a worker that runs two of
    them in a row builds it once (digit strips take seconds to render). Tasks are read-only."""
    from benchmarks.tasks import load_task

    return load_task(name, **json.loads(args_json))


def run_cell(cell: Cell, device: str, threads: int | None = None) -> dict[str, Any]:
    """Train and evaluate one cell; never raises: failures become a row with a status."""
    from benchmarks.harness.train import TrainConfig, train
    from benchmarks.timing.devices import environment, resolve_device
    from models.precision import training_precision

    if threads:
        torch.set_num_threads(threads)
    if cell.train.get("meteor", True):
        from benchmarks.harness.meteor import keep_meteor_alive

        keep_meteor_alive()  # one JVM per worker process, not one per cell
    env = environment(resolve_device(device))
    row = identity_row(cell, device) | {
        "torch": env.get("torch"),
        "threads": torch.get_num_threads(),
        "git_commit": env.get("git_commit"),
        "precision": training_precision(resolve_device(device)),  # what train_s was bought with
    }
    t0 = time.perf_counter()
    try:
        task = _cached_task(cell.task, json.dumps(cell.task_args, sort_keys=True))
        result = train(task, TrainConfig(decoder=cell.decoder, device=device, **cell.train))
    except Exception as exc:  # noqa: BLE001 - any failure is a result of this cell
        wall = round(time.perf_counter() - t0, 3)
        return row | {"status": status_of(exc), "error": one_line(exc, where=True), "wall_s": wall}
    row |= {
        "params": result.params,
        "steps": result.steps,
        "train_s": round(result.train_s, 3),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "stop_reason": result.stop_reason,
        "tokens": result.tokens,
        "tokens_to_95": result.tokens_to_95,
    }
    row |= {col: result.test.get(key) for col, key in METRIC_COLUMNS.items()}
    row["val_exact_match"] = result.val.get("exact_match")
    row["val_token_acc"] = result.val.get("token_accuracy")
    row["hparams"] = cell.extra.get("hparams", "")  # tuned | default: the source of lr, warm-up
    buckets = {k: v for k, v in result.test.items() if k.startswith("len")}
    row["test_buckets"] = json.dumps(buckets, sort_keys=True)
    row["history"] = json.dumps(result.history)
    row["meteor_missing_reason"] = result.test.get("meteor_missing_reason", "")
    row["tf_token_acc"] = result.test.get("tf_token_accuracy")
    if cell.extra.get("alignment"):
        from benchmarks.sweeps.alignment_stats import alignment_stats

        stats = alignment_stats(result.model, task, resolve_device(device))
        row["alignment_fraction"] = stats["fraction"]
        row["alignment_examples"] = json.dumps(stats["examples"])
    return row | {"status": "ok", "error": "", "wall_s": round(time.perf_counter() - t0, 3)}
