"""Where sweep cells run: in this process, in a local process pool, or as Ray tasks.

An executor is `run(cells, record)`: it runs every cell through `cell_fn` (default `run_cell`)
and hands each finished row to `record` on the driver, in completion order; `record` is the sweep
runner's atomic, resumable CSV write, so every executor leaves the same file behind. A cell's row
depends on its seed and thread count only, never on which worker ran it.

- `sequential`: one cell after another in this process (also `local` on a GPU: one device).
- `local`: a spawn process pool sized to the cores, each worker with cores/workers torch threads.
- `ray`: each cell a Ray task asking for `num_cpus=threads` (and `num_gpus=1` on cuda), on a Ray
  cluster (`ray_address`) or on a Ray instance started here (loopback only, no dashboard).

A worker that dies (killed, out of memory, node lost) costs its cell one retry; a second death
becomes a row with status `worker_died` (or `oom`): a killer cell neither hangs nor sinks a sweep.
The reverse holds too: local workers die with their driver, even a SIGKILLed one
(benchmarks/lifeline.py), leave Ctrl-C to it, and are killed when it stops on Ctrl-C. The folder
of started-cell markers is named after the driver's pid; one whose driver is dead is removed by
the next local sweep.
Ray: Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI Applications".
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
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
from benchmarks.sweeps.cell import Cell, failed_row, run_cell
from models.errors import ConfigError, one_line

Record = Callable[[dict[str, Any]], None]
CellFn = Callable[[Cell, str, int | None], dict[str, Any]]
Executor = Callable[[list[Cell], Record], None]
EXECUTORS = ("sequential", "local", "ray")
RETRIES = 1  # a cell whose worker died runs once more; a second death is the cell's own result
MARKS_PREFIX = "attnbench-cells-"  # + "<driver pid>-<random>": the local pool's marker folder


def get_executor(
    name: str,
    device: str = "cpu",
    workers: int | None = None,
    ray_address: str | None = None,
    cell_fn: CellFn = run_cell,
) -> Executor:
    """`run(cells, record)` for executor `name`; bad choices fail here, before any work."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}'; choose from {list(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if ray_address and name != "ray":
        raise ConfigError(f"ray_address '{ray_address}' needs executor 'ray', not '{name}'")
    if name == "ray":
        _import_ray()  # fail fast when the optional extra is missing
        return partial(
            _run_ray, device=device, workers=workers, address=ray_address, cell_fn=cell_fn
        )
    if name == "sequential" or device != "cpu":  # one GPU: its cells run one after another
        return partial(_run_sequential, device=device, cell_fn=cell_fn)
    return partial(_run_local, device=device, workers=workers, cell_fn=cell_fn)


def _cores() -> int:
    return os.cpu_count() or 1


def _run_sequential(cells: list[Cell], record: Record, device: str, cell_fn: CellFn) -> None:
    for cell in cells:
        record(cell_fn(cell, device, None))


# ---- local process pool -------------------------------------------------------------------------


def _run_local(
    cells: list[Cell], record: Record, device: str, workers: int | None, cell_fn: CellFn
) -> None:
    """Process pool. A dying worker breaks the whole pool and fails every unfinished future, so
    the cells that had *started* (a marker file each) are the suspects: each reruns alone in a
    one-worker pool, where a second death is unambiguously its own. Unstarted cells just go back
    in the queue, so an innocent neighbour of a killer cell is never written off."""
    workers = workers or max(1, min(len(cells), _cores()))
    threads = max(1, _cores() // workers)
    run = partial(_pool_round, device=device, threads=threads, cell_fn=cell_fn)
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
) -> list[Cell]:
    """Run `cells` in a fresh spawn pool; returns those lost to a broken pool, in input order.
    Ctrl-C (or any exception) in the driver kills the workers before it propagates: they ignore
    SIGINT, and a clean shutdown would wait for their cells to finish."""
    lost: set[str] = set()
    pool = ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
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


def _init_worker(driver_pid: int) -> None:
    """First thing in every pool worker: die with the driver, and ignore Ctrl-C, which the
    terminal sends to the whole process group; the driver alone handles it (and kills us)."""
    ignore_sigint()
    die_with_parent(driver_pid)


def _marked(cell_fn: CellFn, marks: Path, cell: Cell, device: str, threads: int) -> dict:
    """In the worker: a marker file exists exactly while `cell` runs here."""
    mark = marks / cell.cell_id
    mark.touch()
    try:
        return cell_fn(cell, device, threads)
    finally:
        mark.unlink(missing_ok=True)


# ---- Ray ----------------------------------------------------------------------------------------

_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a local Ray node binds to 127.0.0.1
# Ray retries a task its memory monitor killed on a counter of its own (15 or unbounded, by
# version), not max_retries: bounded here so an always-OOM cell ends as an `oom` row, not a loop.
_OOM_RETRIES_ENV = "RAY_task_oom_retries"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs the ray package: pip install -e '.[ray]'") from None
    return ray


@contextmanager
def _ray_env(loopback: bool) -> Iterator[None]:
    """Settings for the Ray processes started or connected now (they read the environment at
    start), restored afterwards. Loopback: Ray turns 'localhost' into the host's routable address
    on purpose (so other nodes can join); its off switch is read once at import, so it is also
    patched into the already-imported constants."""
    from ray._private import ray_constants

    env = {_OOM_RETRIES_ENV: os.environ.get(_OOM_RETRIES_ENV, str(RETRIES))}
    if loopback:
        env[_LOOPBACK_ENV] = "0"
    old_env = {k: os.environ.get(k) for k in env}
    old_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(env)
    ray_constants.ENABLE_RAY_CLUSTER = old_flag and not loopback
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def init_local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start a single-node Ray instance here: every port on 127.0.0.1, no dashboard."""
    ray = _import_ray()
    with _ray_env(loopback=True):
        ray.init(
            num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, configure_logging=False
        )


def _connect(ray: Any, address: str | None) -> bool:
    """Join `address` (shipping this checkout's code), reuse a running Ray, or start one here;
    True when this call started or joined it (and so must shut it down)."""
    if ray.is_initialized():
        return False  # the caller's Ray (a test, a notebook): leave it as it is
    if address is None:
        init_local_ray()
        return True
    import benchmarks
    import models

    # py_modules ships these packages to every node, so the code that runs is this checkout's;
    # torch and the other dependencies must already be installed there.
    with _ray_env(loopback=False):
        ray.init(
            address=address,
            configure_logging=False,
            runtime_env={"py_modules": [benchmarks, models]},
        )
    return True


def _plan(ray: Any, workers: int | None, gpus: int) -> int:
    """Threads per cell (`workers` cells per node, else one thread each), checked to fit a node:
    a request no node can hold would wait forever instead of failing."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    widest = max((int(r.get("CPU", 0)) for r in nodes), default=0)
    threads = max(1, widest // workers) if workers else 1
    if not any(r.get("CPU", 0) >= threads and r.get("GPU", 0) >= gpus for r in nodes):
        have = [{k: r.get(k, 0) for k in ("CPU", "GPU")} for r in nodes]
        raise ConfigError(
            f"no Ray node can run a cell needing {threads} CPU and {gpus} GPU; nodes: {have}"
        )
    return threads


def _run_ray(
    cells: list[Cell],
    record: Record,
    device: str,
    workers: int | None,
    address: str | None,
    cell_fn: CellFn,
) -> None:
    """One Ray task per cell; rows are recorded on the driver as tasks finish."""
    from benchmarks.timing.devices import git_commit

    ray = _import_ray()
    owned = _connect(ray, address)
    try:
        gpus = 1 if device.startswith("cuda") else 0  # Ray sets CUDA_VISIBLE_DEVICES per task
        threads = _plan(ray, workers, gpus)
        task = ray.remote(
            num_cpus=threads, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False
        )(cell_fn)
        refs = {task.remote(c, device, threads): c for c in cells}
        commit = git_commit()  # a node running shipped code has no .git of its own
        while refs:
            (ref,), _ = ray.wait(list(refs), num_returns=1)
            row = _ray_row(ray, ref, refs.pop(ref), device)
            if row.get("status") == "ok" and not row.get("git_commit"):
                row["git_commit"] = commit
            record(row)
    finally:
        if owned:
            ray.shutdown()


def _ray_row(ray: Any, ref: Any, cell: Cell, device: str) -> dict[str, Any]:
    errors = ray.exceptions
    try:
        return ray.get(ref)
    except errors.OutOfMemoryError as exc:  # Ray's memory monitor killed the worker
        return failed_row(cell, device, "oom", one_line(exc))
    except errors.RayTaskError as exc:  # raised inside the task, e.g. code missing on a node
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return failed_row(cell, device, "error", one_line(cause, where=True))
    except errors.RayError as exc:  # worker crashed or node lost, RETRIES times over
        why = f"{type(exc).__name__} after {RETRIES + 1} attempts: {one_line(exc)}"
        return failed_row(cell, device, "worker_died", why)
