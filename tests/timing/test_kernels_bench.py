"""The kernel benchmark's own machinery: FLOPs, memory prediction and measurement, devices.

Shapes: B batch, H heads, N sequence length, Dh head width. Also runs the whole benchmark file
once with `--benchmark-disable --profile quick`, so it cannot rot between benchmark runs.
"""

from __future__ import annotations

import csv
import gc
import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from benchmarks.files import write_csv
from benchmarks.timing import devices
from benchmarks.timing.cases import (
    DEFAULT,
    QUICK,
    KernelCase,
    attention_flops,
    compiles_per_shape,
    kernel_cases,
    kernel_config,
    memory_cases,
    predict_peak_bytes,
    query_key_pairs,
    skip_reason,
    unavailable_reason,
)
from benchmarks.timing.memory import CSV_COLUMNS, measure_memory, return_freed_memory
from models.attention.flex import FlexAttention
from models.errors import ConfigError
from models.registry import kernel_class, list_kernels

CPU = torch.device("cpu")


TIMED = "test_kernel and n128"  # timed by the records test; the rest runs once, untimed


def test_bench_attention_quick_profile_passes() -> None:
    files = ["benchmarks/timing/bench_attention.py", "benchmarks/timing/bench_training.py"]
    cmd = [sys.executable, "-m", "pytest", *files, "--benchmark-disable", "-k", f"not ({TIMED})"]
    cmd += ["--profile", "quick", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run(cmd, cwd=devices.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) > 0, run.stdout[-2000:]


def test_kernel_records_carry_the_registry_cost_model(tmp_path) -> None:
    """A timed quick run of the N=128 kernel cases: each record's FLOPs and predicted peak are
    the kernel class's own; a kernel that compiles per shape records its compile time apart."""
    out = tmp_path / "kernels.json"
    cmd = [sys.executable, "-m", "pytest", "benchmarks/timing/bench_attention.py", "-k",
           TIMED, "--profile", "quick", f"--benchmark-json={out}", "-q",
           "-p", "no:cacheprovider"]  # fmt: skip
    run = subprocess.run(cmd, cwd=devices.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    records = [b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]]
    runnable = {k for k in list_kernels() if unavailable_reason(k, CPU) is None}
    assert {r["kernel"] for r in records} == runnable
    for r in records:
        torch.set_num_threads(r["threads"])  # sdpa's model counts per-thread buffers
        case = KernelCase(r["kernel"], r["n"], r["b"], r["h"], r["dh"], r["causal"], r["mode"])
        assert r["flops"] == attention_flops(case)
        # above the inputs, like the measured peak it is compared with
        assert r["predicted_mem_mb"] == round(predict_peak_bytes(case) / 2**20, 1)
        if not compiles_per_shape(case.kernel):  # which SDPA backend ran, recorded
            assert r["sdpa_backend"] == ("flash (CPU)" if case.kernel == "sdpa" else "")
        assert json.loads(r["kernel_cfg"]) == json.loads(
            json.dumps(kernel_config(case.kernel, case.dh))
        )
        assert (r.get("compile_s") is not None) == compiles_per_shape(case.kernel)


def test_attention_flops_follows_flashattention_convention() -> None:
    case = KernelCase("sdpa", n=4, b=2, h=3, dh=5, causal=False, mode="fwd")
    assert attention_flops(case) == 4 * 2 * 3 * 4 * 4 * 5  # 1920
    causal = KernelCase("dot", 4, 2, 3, 5, True, "fwd")
    assert attention_flops(causal) == 960
    assert attention_flops(KernelCase("dot", 4, 2, 3, 5, False, "fwd_bwd")) == 3.5 * 1920
    assert attention_flops(KernelCase("additive", 4, 2, 3, 5, False, "fwd")) is None
    assert query_key_pairs(case) == 2 * 3 * 16 and query_key_pairs(causal) == 2 * 3 * 8


def test_kernel_cases_come_from_the_registry_at_constant_tokens_per_call() -> None:
    cases = kernel_cases(DEFAULT)
    assert {c.b * c.n for c in cases if c.n <= DEFAULT.tokens} == {DEFAULT.tokens}
    assert {c.b for c in cases if c.n > DEFAULT.tokens} == {1}
    assert {c.kernel for c in cases} == set(list_kernels())
    for kernel in list_kernels():
        ns = {c.n for c in cases if c.kernel == kernel}
        assert ns == set(DEFAULT.compiled_ns if compiles_per_shape(kernel) else DEFAULT.ns)
    assert max(c.n for c in cases if c.causal and c.mode == "fwd_bwd") == DEFAULT.causal_bwd_max_n
    assert max(c.n for c in cases) == 16384 and compiles_per_shape("flex")
    assert {c.n for c in memory_cases(DEFAULT) if c.kernel == "chunked"} >= {8192, 16384}


def test_case_flops_and_bytes_are_the_kernel_class_methods() -> None:
    for case in kernel_cases(DEFAULT):
        cls, bwd = kernel_class(case.kernel), case.mode == "fwd_bwd"
        shape = (case.b, case.h, case.n, case.n, case.dh, case.causal, bwd)
        assert attention_flops(case) == cls.flops(*shape)
        cfg = kernel_config(case.kernel, case.dh)
        assert predict_peak_bytes(case) == cls.peak_bytes(*shape, 4, **cfg)
    assert kernel_config("chunked", 64) == {"block_size": (256, 512)}  # recorded with each row
    assert kernel_config("additive", 32)["head_dim"] == 32


def test_predict_peak_bytes_quadratic_only_for_materialising_kernels() -> None:
    def ratio(kernel: str) -> float:  # peak at 2N over peak at N, same batch
        small, big = (KernelCase(kernel, n, 1, 8, 64, False, "fwd_bwd") for n in (4096, 8192))
        return predict_peak_bytes(big) / predict_peak_bytes(small)

    assert ratio("dot") > 3.5 and ratio("additive") > 3.5
    assert ratio("sdpa") < 2.1 and ratio("chunked") < 2.1


def test_skip_reason_names_the_profile_cap_and_the_memory_limit() -> None:
    huge = KernelCase("dot", 1 << 20, 1, 8, 64, False, "fwd")  # a 32 TiB score matrix
    assert "predicted peak" in skip_reason(huge, DEFAULT, CPU, 4)
    assert skip_reason(KernelCase("sdpa", 128, 1, 2, 16, False, "fwd"), DEFAULT, CPU, 4) is None
    dot = KernelCase("dot", 8192, 1, 4, 64, False, "fwd_bwd")  # 3.1 GiB predicted
    assert "the profile's cap of 512 MiB" in skip_reason(dot, DEFAULT, CPU, 4)
    assert all(not c.causal for c in memory_cases(DEFAULT))


def test_unavailable_kernel_cases_are_recorded_skips(monkeypatch) -> None:
    why = "no C++ compiler for inductor: InvalidCxxCompiler"
    monkeypatch.setattr(FlexAttention, "unavailable_reason", classmethod(lambda cls, device: why))
    flex = [c for c in kernel_cases(DEFAULT) + memory_cases(DEFAULT) if c.kernel == "flex"]
    assert flex and all(skip_reason(c, DEFAULT, CPU, 4) == f"flex unavailable: {why}" for c in flex)
    rows = measure_memory(flex[:2], DEFAULT, CPU)  # every case skipped: no worker runs
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("skipped", f"flex unavailable: {why}")
    ] * 2
    assert rows[0]["predicted_mem_mb"] > 0 and rows[0]["allocator"] in ("glibc", "system")


def test_measure_memory_dot_exceeds_chunked_in_fresh_processes(tmp_path) -> None:
    dot, chunked, huge = (
        KernelCase("dot", 4096, 1, 4, 32, False, "fwd"),  # 256 MiB score matrix
        KernelCase("chunked", 4096, 1, 4, 32, False, "fwd"),  # (T, block) temporaries only
        KernelCase("dot", 1 << 20, 1, 8, 64, False, "fwd"),
    )
    rows = measure_memory([dot, chunked, huge], replace(QUICK, call_cap_mb=4096), CPU)
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped"], rows
    # dot materialises the (H, N, N) scores, chunked never does: the gap is at least one score
    # matrix. (A fixed ratio at N=2048 was flaky: chunked's T x block temporaries are ~70 MB.)
    score_matrix_mb = 4 * 4096 * 4096 * 4 / 2**20
    assert rows[0]["peak_mem_mb"] - rows[1]["peak_mem_mb"] > score_matrix_mb, rows
    assert 0.6 < rows[0]["peak_mem_mb"] / rows[0]["predicted_mem_mb"] < 1.4  # the model holds
    path = tmp_path / "kernel_memory_cpu.csv"
    write_csv(path, rows, CSV_COLUMNS)
    with path.open() as f:
        assert tuple(next(csv.reader(f))) == CSV_COLUMNS


def test_freed_heap_memory_is_returned_before_a_measurement() -> None:
    """What a warm-up frees must not serve the measured call unseen: freed heap blocks below a
    live one (so glibc cannot trim them as the heap's top) leave the resident set on trimming."""
    if devices.allocator() != "glibc":
        pytest.skip(f"allocator {devices.allocator()}: no malloc_trim")
    blocks = [torch.ones(16 * 1024) for _ in range(1024)]  # 1024 x 64 KiB: heap, not mmap
    fence = torch.ones(16 * 1024)  # allocated after them: the freed blocks are not the top
    del blocks
    gc.collect()
    before = devices.current_memory(CPU)
    return_freed_memory()
    assert before - devices.current_memory(CPU) > 32 * 2**20
    del fence


def test_additive_backward_meets_its_model_under_glibc_defaults() -> None:
    """The case that read 82 MiB against 64 predicted (1.28x): its block buffer was exactly one
    score matrix, which glibc cannot place in a freed score matrix's hole (64-byte alignment
    needs a few bytes more), so each one grew the heap beside the resident holes."""
    if devices.allocator() != "glibc":
        pytest.skip(f"allocator {devices.allocator()}: the heap-hole effect is glibc's")
    case = KernelCase("additive", 256, 16, 4, 64, False, "fwd_bwd")
    (row,) = measure_memory([case], DEFAULT, CPU)
    assert row["status"] == "ok", row
    assert 0.8 <= row["peak_mem_mb"] / row["predicted_mem_mb"] <= 1.2, row


def test_synchronize_cpu_is_a_noop_that_never_touches_cuda(monkeypatch) -> None:
    def boom(*args: object) -> None:
        raise AssertionError("torch.cuda.synchronize called on a CPU run")

    monkeypatch.setattr(torch.cuda, "synchronize", boom)
    assert devices.synchronize(CPU) is None


def test_resolve_device_rejects_unknown_and_unavailable_devices() -> None:
    assert devices.resolve_device("cpu") == CPU
    assert devices.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        devices.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'cuda' is not available"):
            devices.resolve_device("cuda")


def test_environment_records_allocator_and_threads(monkeypatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4")
    env = devices.environment(CPU)
    assert env["allocator"] == "tcmalloc" and env["threads"] == torch.get_num_threads()
    assert {"torch", "cpu_model", "gpu", "git_commit"} <= set(env) and "hostname" not in env
    monkeypatch.delenv("LD_PRELOAD")
    assert devices.allocator() in ("glibc", "system")


def test_peak_memory_read_sees_a_cpu_allocation() -> None:
    devices.peak_memory_reset(CPU)
    before = devices.peak_memory_read(CPU)
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched: above glibc's mmap threshold
    assert devices.peak_memory_read(CPU) - before > 48 * 2**20
    del block


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_and_synchronize_on_cuda() -> None:
    cuda = devices.resolve_device("cuda")
    devices.peak_memory_reset(cuda)
    base = devices.current_memory(cuda)
    x = torch.ones(2**20, device=cuda)  # 4 MiB
    devices.synchronize(cuda)
    assert devices.peak_memory_read(cuda) - base >= 4 * 2**20
    assert devices.environment(cuda)["gpu"]
    del x
