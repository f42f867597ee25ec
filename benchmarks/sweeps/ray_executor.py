"""The `ray` executor: each sweep cell a Ray task asking for `num_cpus=threads` (and `num_gpus=1`
on CUDA: Ray then sets CUDA_VISIBLE_DEVICES per task), on a Ray cluster (`ray_address`) or on a
Ray instance started here (loopback only, no dashboard). Rows come back to the driver's `record`
as tasks finish, like every executor's (executors.py).
Ray: Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI Applications".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.sweeps.cell import RETRIES, Cell, CellFn, Record, failed_row
from models.errors import ConfigError, one_line

_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a local Ray node binds to 127.0.0.1
# Ray retries a task its memory monitor killed on a counter of its own (15 or unbounded, by
# version), not max_retries: bounded here so an always-OOM cell ends as an `oom` row, not a loop.
_OOM_RETRIES_ENV = "RAY_task_oom_retries"


def import_ray() -> Any:
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
    ray = import_ray()
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

    ray = import_ray()
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
