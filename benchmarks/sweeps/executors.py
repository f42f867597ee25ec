"""Where sweep cells run: in this process, in a local process pool, or as Ray tasks.

An executor is `run(cells, record)`: it runs every cell through `cell_fn` (default `run_cell`)
and hands each finished row to `record` on the driver, in completion order; `record` is the sweep
runner's atomic, resumable CSV write, so every executor leaves the same file behind. A cell's row
depends on its seed and thread count only, never on which worker ran it.

- `sequential`: one cell after another in this process (also `local` on one GPU).
- `local`: a spawn process pool sized to the cores, each worker with cores/workers torch threads;
  on a machine with several GPUs and `--device cuda`, one worker per GPU, each seeing only its
  own through CUDA_VISIBLE_DEVICES (set before it touches CUDA), so cells never share a GPU.
- `ray`: each cell a Ray task asking for `num_cpus=threads` (and `num_gpus=1` on cuda), on a Ray
  cluster (`ray_address`) or on a Ray instance started here (loopback only, no dashboard).

A worker that dies (killed, out of memory, node lost) costs its cell one retry; a second death
becomes a row with status `worker_died` (or `oom`): a killer cell neither hangs nor sinks a sweep.
The reverse holds too: local workers die with their driver, even a SIGKILLed one
(benchmarks/lifeline.py), leave Ctrl-C to it, and are killed when it stops on Ctrl-C. The folder
of started-cell markers is named after the driver's pid; one whose driver is dead is removed by
the next local sweep.
Ray runs in ray_executor.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.lifeline import (
    die_with_parent,
    ignore_sigint,
    remove_orphaned_dirs,
    sigint_blocked,
)
from benchmarks.sweeps.cell import RETRIES, Cell, CellFn, Record, failed_row, run_cell
from models.errors import ConfigError, one_line

Executor = Callable[[list[Cell], Record], None]
EXECUTORS = ("sequential", "local", "ray")
MARKS_PREFIX = "attnbench-cells-"  # + "<driver pid>-<random>": the local pool's marker folder


def get_executor(
    name: str,
    device: str = "cpu",
    workers: int | None = None,
    ray_address: str | None = None,
    cell_fn: CellFn = run_cell,
    gpu_count: int | None = None,
) -> Executor:
    """`run(cells, record)` for executor `name`; bad choices fail here, before any work."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}'; choose from {list(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if ray_address and name != "ray":
        raise ConfigError(f"ray_address '{ray_address}' needs executor 'ray', not '{name}'")
    if name == "ray":
        from benchmarks.sweeps.ray_executor import _run_ray, import_ray

        import_ray()  # fail fast when the optional extra is missing
        return partial(
            _run_ray, device=device, workers=workers, address=ray_address, cell_fn=cell_fn
        )
    gpus = worker_gpus(device, gpu_count)
    if name == "sequential" or (device != "cpu" and len(gpus) < 2):  # one device: in turn
        return partial(_run_sequential, device=device, cell_fn=cell_fn)
    if gpus and workers is not None and workers > len(gpus):
        raise ConfigError(f"workers={workers} > {len(gpus)} GPUs: cells would share a GPU")
    return partial(_run_local, device=device, workers=workers, cell_fn=cell_fn, gpus=gpus)


def worker_gpus(device: str, gpu_count: int | None = None) -> list[str]:
    """The GPU index each local worker gets (CUDA_VISIBLE_DEVICES), one worker per GPU: every
    GPU for plain `cuda`, none for the CPU or for one named GPU (`cuda:1` runs its cells there,
    in turn). `gpu_count` stands in for torch.cuda.device_count() (tests)."""
    if device != "cuda":
        return []
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    return [str(i) for i in range(gpu_count)]


def _cores() -> int:
    return os.cpu_count() or 1


def _run_sequential(cells: list[Cell], record: Record, device: str, cell_fn: CellFn) -> None:
    for cell in cells:
        record(cell_fn(cell, device, None))


# ---- local process pool -------------------------------------------------------------------------


def _run_local(
    cells: list[Cell],
    record: Record,
    device: str,
    workers: int | None,
    cell_fn: CellFn,
    gpus: list[str],
) -> None:
    """Process pool. A dying worker breaks the whole pool and fails every unfinished future, so
    the cells that had *started* (a marker file each) are the suspects: each reruns alone in a
    one-worker pool, where a second death is unambiguously its own. Unstarted cells just go back
    in the queue, so an innocent neighbour of a killer cell is never written off."""
    workers = workers or max(1, min(len(cells), len(gpus) or _cores()))
    threads = max(1, _cores() // workers)
    run = partial(_pool_round, device=device, threads=threads, cell_fn=cell_fn, gpus=gpus)
    pending = list(cells)
    remove_orphaned_dirs(MARKS_PREFIX)  # left by a driver that was killed outright
    with tempfile.TemporaryDirectory(prefix=f"{MARKS_PREFIX}{os.getpid()}-") as tmp:
        marks = Path(tmp)
        while pending:
            broken = run(pending, record, workers=workers, marks=marks)
            started = [c for c in broken if (marks / c.cell_id).exists()] or broken
            for cell in started:  # (no marker at all: a worker died before any cell began)
                (marks / cell.cell_id).unlink(missing_ok=True)
                if run([cell], record, workers=1, marks=marks):
                    why = f"worker process died {RETRIES + 1} times running this cell"
                    record(failed_row(cell, device, "worker_died", why))
            pending = [c for c in broken if c not in started]


def _pool_round(
    cells: list[Cell],
    record: Record,
    workers: int,
    marks: Path,
    device: str,
    threads: int,
    cell_fn: CellFn,
    gpus: list[str],
) -> list[Cell]:
    """Run `cells` in a fresh spawn pool; returns those lost to a broken pool, in input order.
    Ctrl-C (or any exception) in the driver kills the workers before it propagates: they ignore
    SIGINT, and a clean shutdown would wait for their cells to finish. With `gpus`, each worker
    takes one index from a queue holding each GPU once."""
    lost: set[str] = set()
    ctx = get_context("spawn")
    gpu_queue = None
    if gpus:
        gpu_queue = ctx.SimpleQueue()
        for index in gpus[:workers]:
            gpu_queue.put(index)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(os.getpid(), gpu_queue),
    )
    try:
        with sigint_blocked():  # submit starts the workers: born blocked, they ignore Ctrl-C
            futures = {pool.submit(_marked, cell_fn, marks, c, device, threads): c for c in cells}
        for fut in as_completed(futures):
            cell = futures[fut]
            try:
                record(fut.result())
            except BrokenProcessPool:
                lost.add(cell.cell_id)
            except Exception as exc:  # noqa: BLE001 - e.g. a row that cannot be pickled back
                record(failed_row(cell, device, "error", one_line(exc, where=True)))
    except BaseException:
        for proc in list((pool._processes or {}).values()):  # no public handle on the workers
            proc.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [c for c in cells if c.cell_id in lost]


def _init_worker(driver_pid: int, gpu_queue: Any = None) -> None:
    """First thing in every pool worker: die with the driver, and ignore Ctrl-C, which the
    terminal sends to the whole process group; the driver alone handles it (and kills us).
    With a GPU queue: see only the GPU taken from it (CUDA reads this at its initialisation,
    which no worker has reached yet), so that this worker's 'cuda' is that GPU."""
    ignore_sigint()
    die_with_parent(driver_pid)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_queue.get()


def _marked(cell_fn: CellFn, marks: Path, cell: Cell, device: str, threads: int) -> dict:
    """In the worker: a marker file exists exactly while `cell` runs here."""
    mark = marks / cell.cell_id
    mark.touch()
    try:
        return cell_fn(cell, device, threads)
    finally:
        mark.unlink(missing_ok=True)
