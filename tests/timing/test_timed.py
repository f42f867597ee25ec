"""The timing's CUDA-minded pieces, checked on the CPU: the order of the CUDA peak-memory
measurement (allocator calls mocked), rounds of back-to-back calls with one sync, the recorded
SDPA backend, device names, and the nominal FLOP counts each kernel reports."""

from __future__ import annotations

import pytest
import torch

from benchmarks.timing import timed
from benchmarks.timing.bench_attention import first_call, sdpa_backend
from benchmarks.timing.cases import KernelCase, build_call
from benchmarks.timing.devices import device_name, device_tag, resolve_device
from models.registry import kernel_class, list_kernels

CUDA = torch.device("cuda")  # a device object only: nothing here touches CUDA


def test_cuda_peak_reads_its_baseline_after_release_and_setup(monkeypatch) -> None:
    """The previous call's gradients are released and this call's inputs built before the
    baseline is read and the counter reset; only the call runs inside the window."""
    log: list[str] = []
    memory = {"now": 100 * 2**20}
    monkeypatch.setattr(timed, "synchronize", lambda d: log.append("sync"))
    monkeypatch.setattr(timed, "current_memory", lambda d: log.append("base") or memory["now"])
    monkeypatch.setattr(timed, "peak_memory_reset", lambda d: log.append("reset"))
    monkeypatch.setattr(timed, "peak_memory_read", lambda d: log.append("read") or 164 * 2**20)
    peak = timed.cuda_peak_above_baseline(
        lambda x: log.append(f"call {x}"),
        lambda: (log.append("setup"), ((7,), {}))[1],
        lambda: log.append("release"),
        CUDA,
    )
    assert log == ["release", "setup", "sync", "base", "reset", "call 7", "sync", "read"]
    assert peak == 64.0


def test_cuda_sizes_its_rounds_past_the_cold_first_call(monkeypatch) -> None:
    """The first CUDA call pays lazy set-up: one slow call must not size the rounds (it made a
    13 ms training step a single timed round). On the CPU a call over budget stays one call."""
    monkeypatch.setattr(timed, "synchronize", lambda d: None)
    clock = {"t": 0.0}
    monkeypatch.setattr(timed.time, "perf_counter", lambda: clock["t"])

    def call_costing(*seconds: float):
        costs = iter(seconds)
        return lambda: clock.__setitem__("t", clock["t"] + next(costs))

    assert timed._estimate(call_costing(0.5, 0.01, 0.01), None, 0.25, CUDA) == pytest.approx(0.01)
    assert timed._estimate(call_costing(0.5), None, 0.25, torch.device("cpu")) == 0.5


def test_a_compiling_first_call_that_fails_is_a_reason_not_a_crash(capsys) -> None:
    def broken() -> None:
        raise RuntimeError("Inference tensors cannot be saved for backward.\nmore")

    def out_of_memory() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")

    cpu = torch.device("cpu")
    assert first_call(lambda: None, cpu) is None
    reason = first_call(broken, cpu)
    assert reason == (
        "first (compiling) call failed on cpu: "
        "RuntimeError: Inference tensors cannot be saved for backward."
    )
    assert "Traceback" in capsys.readouterr().err  # the whole story stays in the log
    with pytest.raises(torch.OutOfMemoryError):  # an OOM stays the caller's recorded OOM skip
        first_call(out_of_memory, cpu)


def test_cuda_rounds_are_back_to_back_calls_with_one_sync(monkeypatch) -> None:
    syncs: list[torch.device] = []
    monkeypatch.setattr(timed, "synchronize", syncs.append)
    assert timed.calls_per_round(1e-3, torch.device("cpu"), False) == 1
    assert timed.calls_per_round(1e-4, CUDA, False) == 100  # 10 ms of calls
    assert timed.calls_per_round(1.0, CUDA, False) == 1
    assert timed.calls_per_round(1e-4, CUDA, True) == 1  # a fresh setup per call: one per round
    calls: list[int] = []
    fn = timed.synced_every(lambda: calls.append(1), 4, CUDA)
    for _ in range(8):
        fn()
    assert len(calls) == 8 and len(syncs) == 2


@pytest.mark.parametrize(("kernel", "backend"), [("sdpa", "flash (CPU)"), ("dot", "")])
def test_the_sdpa_backend_that_ran_is_recorded(kernel: str, backend: str) -> None:
    case = KernelCase(kernel, 64, 1, 2, 16, False, "fwd")
    assert sdpa_backend(build_call(case, torch.device("cpu"), torch.float32, 0)) == backend


def test_devices_name_a_gpu_by_index_and_files_by_type() -> None:
    assert device_name("auto") == str(resolve_device("auto"))
    assert device_tag("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"unknown device 'cuda:x'"):
        resolve_device("cuda:x")
    with pytest.raises(ValueError, match=r"unknown device 'cpu:0'"):
        resolve_device("cpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda:1' is not available here"):
            resolve_device("cuda:1")


@pytest.mark.parametrize("kernel", list_kernels())
def test_nominal_flops_per_kernel_and_mode(kernel: str) -> None:
    """FlashAttention's count for every matmul kernel, whatever it executes: 4*B*H*N^2*Dh
    forward, halved causal (N^2/2, their convention), x3.5 forward+backward."""
    b, h, n, dh = 2, 3, 64, 16
    flops = kernel_class(kernel).flops
    full = flops(b, h, n, n, dh, False, False)
    if kernel == "additive":
        assert full is None  # not a matmul kernel: reported in query-key pairs/s
        return
    assert full == 4.0 * b * h * n * n * dh
    assert flops(b, h, n, n, dh, False, True) == 3.5 * full
    assert flops(b, h, n, n, dh, True, False) == full / 2
    assert flops(b, h, n, n, dh, True, True) == 3.5 * flops(b, h, n, n, dh, True, False)
