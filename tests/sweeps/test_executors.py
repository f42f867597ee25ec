"""Sweep executors: sequential, local process pool and Ray give the same rows; dying workers.

Cells are real but tiny training runs (reverse L=4, d_model 16, a few steps). The Ray tests start
one local Ray instance for the module (2 CPUs, loopback only, no dashboard) and skip cleanly when
ray is not installed (it is the optional extra `.[ray]`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.sweeps.cell import METRIC_COLUMNS, RETRIES, Cell, run_cell
from benchmarks.sweeps.executors import get_executor, worker_gpus
from benchmarks.sweeps.ray_executor import init_local_ray
from benchmarks.sweeps.store import read_rows
from benchmarks.sweeps.sweep import run_sweep

COMPARED = [*METRIC_COLUMNS, "params", "steps", "val_exact_match", "test_buckets", "history"]
COMPARED += ["stop_reason", "tokens", "tokens_to_95"]


def measured(row: dict[str, Any]) -> dict[str, Any]:
    """What a seed determines: the COMPARED columns, history without its timings."""
    out = {c: row[c] for c in COMPARED}
    out["history"] = [
        {k: v for k, v in h.items() if k != "train_s"} for h in json.loads(out["history"])
    ]
    return out


def tiny_cell(decoder: str, seed: int, extra: dict[str, Any] | None = None) -> Cell:
    args = {"length": 4, "seed": seed, "n_train": 48, "n_val": 8, "n_test": 8}
    train = {
        "d_model": 16,
        "batch_size": 8,
        "max_steps": 6,
        "warmup_steps": 1,
        "eval_every": 6,
        "meteor": False,
        "seed": seed,
    }
    return Cell("test", "reverse", args, decoder, train, label=f"s{seed}", extra=extra or {})


def dying_cell_fn(cell: Cell, device: str, threads: int | None) -> dict[str, Any]:
    """SIGKILLs its own worker when the cell says so: `once` (a marker file remembers) or
    `always`; each attempt leaves a file, so the test can count them."""
    die, marks = cell.extra.get("die"), cell.extra.get("marks")
    if die:
        attempts = len(list(Path(marks).glob(f"{cell.cell_id}.*")))
        (Path(marks) / f"{cell.cell_id}.{attempts}").touch()
        if die == "always" or attempts == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(cell, device, threads)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    # Ray workers cannot import this test module (tests/ is not a package): ship it by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # num_gpus=0: on a GPU machine Ray would count the GPU, and the test below that expects no
    # node to hold a GPU request would get no error
    init_local_ray(num_cpus=2, num_gpus=0)
    yield ray
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_get_executor_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"unknown executor 'dask'; choose from \['sequential'"):
        get_executor("dask")


def test_get_executor_rejects_ray_address_without_ray():
    with pytest.raises(ValueError, match="needs executor 'ray'"):
        get_executor("local", ray_address="127.0.0.1:6379")


def test_get_executor_rejects_zero_workers():
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        get_executor("local", workers=0)


def test_get_executor_names_the_missing_ray_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without `.[ray]` sees
    with pytest.raises(ValueError, match=r"executor 'ray' needs the ray package: pip install"):
        get_executor("ray")


@pytest.mark.slow
def test_ray_executor_rows_match_local_and_sequential(ray_local, tmp_path):
    cells = [tiny_cell(d, s) for d in ("rnn_attn", "transformer") for s in (0, 1)]
    rows = {}
    for executor in ("sequential", "local", "ray"):
        out = tmp_path / f"{executor}.csv"
        run_sweep(cells, out, executor=executor, workers=2)
        rows[executor] = {r["cell_id"]: r for r in read_rows(out)}  # as written: CSV strings
    assert set(rows["ray"]) == {c.cell_id for c in cells}
    for cell_id, ray_row in rows["ray"].items():
        assert ray_row["status"] == "ok", ray_row["error"]
        assert (
            ray_row["threads"] == "1"
            and ray_row["git_commit"] == rows["local"][cell_id]["git_commit"]
        )
        for executor in ("sequential", "local"):
            other = rows[executor][cell_id]
            assert measured(ray_row) == measured(other)
    assert len({r["val_loss"] for r in rows["ray"].values()}) == len(cells)  # seeds differ


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_executor_survives_killed_workers(executor, tmp_path, request):
    """A cell whose worker dies once is retried and succeeds; one that always dies becomes a
    `worker_died` row after RETRIES + 1 attempts; its innocent neighbour is unharmed."""
    if executor == "ray":
        request.getfixturevalue("ray_local")
    marks = tmp_path / "marks"
    marks.mkdir()
    cells = [
        tiny_cell("rnn", 0),
        tiny_cell("rnn", 1, {"die": "once", "marks": str(marks)}),
        tiny_cell("rnn", 2, {"die": "always", "marks": str(marks)}),
    ]
    run = get_executor(executor, workers=2, cell_fn=dying_cell_fn)
    recorded: list[dict[str, Any]] = []
    run(cells, recorded.append)
    by_seed = {int(r["seed"]): r for r in recorded}
    assert len(recorded) == 3 and set(by_seed) == {0, 1, 2}
    assert by_seed[0]["status"] == "ok" and by_seed[1]["status"] == "ok"
    assert by_seed[2]["status"] == "worker_died"
    assert len(list(marks.glob(f"{cells[1].cell_id}.*"))) == 2  # died once, then succeeded
    assert len(list(marks.glob(f"{cells[2].cell_id}.*"))) == RETRIES + 1


@pytest.mark.slow
def test_run_sweep_on_ray_resumes_without_rerunning(ray_local, tmp_path):
    out = tmp_path / "sweep.csv"
    first = run_sweep([tiny_cell("rnn", 0)], out, executor="ray")
    seen: list[dict[str, Any]] = []
    rows = run_sweep(
        [tiny_cell("rnn", 0), tiny_cell("rnn", 1)], out, executor="ray", on_row=seen.append
    )
    assert len(first) == 1 and [r["seed"] for r in seen] == [1]
    assert [r["cell_id"] for r in read_rows(out)] == [r["cell_id"] for r in rows]


def test_ray_executor_refuses_a_request_no_node_can_hold(ray_local):
    """A GPU cell on a CPU-only Ray would wait forever: it fails at once, naming the resources."""
    recorded: list[dict[str, Any]] = []
    run = get_executor("ray", device="cuda")
    with pytest.raises(ValueError, match=r"no Ray node can run a cell needing 1 CPU and 1 GPU"):
        run([tiny_cell("rnn", 0)], recorded.append)
    assert recorded == [] and ray_local.is_initialized()


def test_ray_fixture_hides_the_gpus_of_this_machine(ray_local):
    """The fixture's Ray counts no GPU even on a GPU machine, so the test above holds there."""
    assert ray_local.cluster_resources().get("GPU", 0) == 0


def test_worker_gpus_gives_each_local_worker_its_own_gpu():
    assert worker_gpus("cuda", 4) == ["0", "1", "2", "3"]
    assert worker_gpus("cuda", 1) == ["0"]
    assert worker_gpus("cuda:1", 4) == []  # a named GPU: its cells run there, in turn
    assert worker_gpus("cpu", 4) == []


def test_get_executor_refuses_more_workers_than_gpus():
    with pytest.raises(ValueError, match=r"workers=3 > 2 GPUs: cells would share a GPU"):
        get_executor("local", device="cuda", workers=3, gpu_count=2)


def visible_gpu(cell, device, threads):
    """A cell function reporting which GPU its worker was given (no CUDA needed to read it)."""
    return {"cell_id": cell.cell_id, "status": "ok", "gpu": os.environ["CUDA_VISIBLE_DEVICES"],
            "pid": os.getpid(), "device": device}  # fmt: skip


@pytest.mark.slow
def test_local_workers_on_a_two_gpu_machine_each_see_one_gpu():
    """Two workers, two GPUs (counted as if present): every cell runs in a worker that sees
    exactly one GPU, and the two workers see different ones."""
    rows: list[dict[str, Any]] = []
    run = get_executor("local", device="cuda", cell_fn=visible_gpu, gpu_count=2)
    run([tiny_cell("rnn", seed) for seed in range(6)], rows.append)
    assert len(rows) == 6 and {r["device"] for r in rows} == {"cuda"}
    gpu_of = {}
    for row in rows:
        assert gpu_of.setdefault(row["pid"], row["gpu"]) == row["gpu"]  # one GPU per worker
    assert set(gpu_of.values()) <= {"0", "1"}
    assert len(set(gpu_of.values())) == len(gpu_of)  # no two workers share a GPU
