"""pytest-benchmark timings: attention kernels across N, a GEMM peak, decoding and training steps.

Shapes: B batch, H heads, N sequence length (T = S = N), Dh head width, S memory length,
T target length, D width, V vocab.
Kernels follow FlashAttention's benchmark (Dao et al. 2022): constant tokens per call B*N, each
kernel's own FLOP count (registry; FlashAttention's 4*B*H*N^2*Dh forward, halved causal, x3.5
forward+backward) as a fraction of a GEMM peak measured in the same run. Decoding times one
`step` at growing prefix lengths t and the whole T-token decode, the Transformer with its KV
cache and without (recomputing the prefix).

    pytest benchmarks/timing/bench_attention.py --device cpu --profile default \
        --benchmark-json=out.json

Rounds adapt to each case (`profile.target_s` over the warm-up time, clamped), so slow cases run
few times. On CUDA a round is k back-to-back calls ending in one synchronise (k sized to
CUDA_ROUND_S), reported per call, and 5 rounds warm up; a CPU call returns finished.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import models  # noqa: F401  (registers every decoder and kernel)
from benchmarks.timing.cases import (
    Profile,
    attention_flops,
    build_call,
    compiles_per_shape,
    get_profile,
    kernel_cases,
    kernel_config,
    predict_peak_bytes,
    query_key_pairs,
    skip_reason,
)
from benchmarks.timing.devices import synchronize
from benchmarks.timing.timed import run_timed
from models.base import BOS, EncoderOutput, map_state
from models.errors import one_line
from models.precision import training_autocast, training_precision
from models.registry import accepted_keys, create_decoder, decoder_class, list_decoders

SDPA_OPS = {  # aten op -> the scaled_dot_product_attention backend it belongs to
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient (mem-efficient)",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
}


def decoder_variants() -> list[tuple[str, dict[str, Any]]]:
    """Every registered decoder, plus `use_cache=False` for those with a KV cache."""
    names = list_decoders()
    cached = [n for n in names if "use_cache" in accepted_keys(decoder_class(n))]
    return [(n, {}) for n in names] + [(n, {"use_cache": False}) for n in cached]


def _variant_id(variant: tuple[str, dict[str, Any]]) -> str:
    name, cfg = variant
    return "-".join([name] + [f"{k}={v}" for k, v in cfg.items()])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    prof = get_profile(metafunc.config.getoption("profile"))
    params: dict[str, tuple[list, list[str]]] = {
        "kernel_case": (cases := kernel_cases(prof), [c.id for c in cases]),
        "decoder_variant": (vs := decoder_variants(), [_variant_id(v) for v in vs]),
        "decoder_name": (list_decoders(), list_decoders()),
        "decode_t": (list(prof.decode_ts), [f"t{t}" for t in prof.decode_ts]),
        "train_t": (list(prof.train_ts), [f"T{t}" for t in prof.train_ts]),
    }
    for name, (values, ids) in params.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=ids)


@pytest.fixture
def dtype(device: torch.device) -> torch.dtype:
    """Kernels: fp32 on CPU, bf16 on CUDA (what the fused GPU kernels are built for)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def test_gemm_peak(benchmark: Any, device: torch.device, profile: Profile, common_info) -> None:
    """The machine's matmul rate, measured here: kernels are reported as a fraction of it."""
    cuda = device.type == "cuda"
    n, dtype = (2 * profile.gemm_n, torch.bfloat16) if cuda else (profile.gemm_n, torch.float32)
    gen = torch.Generator().manual_seed(common_info["seed"])
    a, b = (torch.randn(n, n, generator=gen).to(device, dtype) for _ in range(2))  # (n, n)
    flops = 2.0 * n**3
    benchmark.group = "gemm peak"
    benchmark.extra_info.update(
        kind="gemm", kernel="gemm", n=n, flops=flops, dtype=str(dtype).removeprefix("torch."),
        **common_info,
    )  # fmt: skip

    def gemm() -> None:
        torch.matmul(a, b)

    median = run_timed(benchmark, gemm, device, profile)
    if median:
        benchmark.extra_info["gflop_per_s"] = flops / median / 1e9


def test_kernel(
    benchmark: Any, kernel_case, device, dtype, profile, common_info, skip_case
) -> None:
    """One attention kernel call (forward, or forward+backward) at constant tokens per call.

    FLOPs and the predicted peak are the kernel's own cost model (registry). A kernel that
    compiles per shape gets one untimed first call: `compile_s` is that call's excess over the
    steady-state median, reported apart from it.
    """
    case, ebytes = kernel_case, torch.finfo(dtype).bits // 8
    flops = attention_flops(case)
    predicted = predict_peak_bytes(case, ebytes)  # above the inputs, like the measured peak
    info = {
        "kind": "kernel", **asdict(case), "tokens": case.b * case.n, "flops": flops,
        "query_key_pairs": query_key_pairs(case), "dtype": str(dtype).removeprefix("torch."),
        "kernel_cfg": json.dumps(kernel_config(case.kernel, case.dh), sort_keys=True),
        "predicted_mem_mb": round(predicted / 2**20, 1), "peak_mem_mb": None, **common_info,
    }  # fmt: skip
    benchmark.group = f"kernel {case.mode} {'causal' if case.causal else 'full'}"
    benchmark.extra_info.update(info)
    reason = skip_reason(case, profile, device, ebytes)
    if reason:
        skip_case(info, reason)
    oom, first = None, None
    try:
        call = build_call(case, device, dtype, info["seed"], sync=False)
        if compiles_per_shape(case.kernel):
            start = time.perf_counter()
            compile_error = first_call(call, device)
            if compile_error is not None:
                skip_case(info, compile_error)
            first = time.perf_counter() - start
        else:
            benchmark.extra_info["sdpa_backend"] = sdpa_backend(call)

        def release() -> None:  # the previous call's gradients, before a peak is measured
            for t in call.inputs:
                t.grad = None

        median = run_timed(benchmark, call, device, profile, release=release)
    except torch.OutOfMemoryError as err:  # CUDA: an OOM is a recorded skip, not a failed sweep
        oom = one_line(err, limit=120)
    if oom is not None:  # outside `except`, so the traceback no longer pins the tensors
        gc.collect()
        torch.cuda.empty_cache()
        skip_case(info, f"out of memory: {oom}")
    if median:
        benchmark.extra_info["query_key_pairs_per_s"] = query_key_pairs(case) / median
        if flops:
            benchmark.extra_info["gflop_per_s"] = flops / median / 1e9
        if first is not None:
            benchmark.extra_info.update(first_call_s=first, compile_s=max(0.0, first - median))


def first_call(call: Callable[[], None], device: torch.device) -> str | None:
    """The untimed first call of a kernel that compiles per shape; why it failed, or None.

    A compiler that cannot build this case on this platform (as the kernel's own probe skips a
    platform it cannot compile on at all) is a recorded skip with the error's first line, not a
    failed sweep; the whole traceback goes to stderr for whoever reads the log.
    """
    try:
        call()
        synchronize(device)
    except torch.OutOfMemoryError:
        raise  # the caller's recorded OOM skip
    except Exception as err:
        traceback.print_exc(file=sys.stderr)
        return f"first (compiling) call failed on {device.type}: {one_line(err, limit=160)}"
    return None


def sdpa_backend(call: Callable[[], None]) -> str:
    """Which scaled_dot_product_attention backend one call of `call` ran, read from the aten ops
    the profiler saw ('' when it called none: every kernel but sdpa). Recorded beside each
    timing, since PyTorch picks the backend per call from dtype, shape, mask and device."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:  # aten ops dispatch on the host
        call()
    seen = {e.key for e in prof.key_averages()}
    return ", ".join(sorted({name for op, name in SDPA_OPS.items() if op in seen}))


def random_encoder_output(profile: Profile, batch: int, device: torch.device, seed: int):
    """Fixed random memory (B, S, D); rows keep S/2..S real positions, summary = their mean."""
    gen = torch.Generator().manual_seed(seed)
    b, s, d = batch, profile.mem_len, profile.d_model
    memory = torch.randn(b, s, d, generator=gen)  # (B, S, D)
    lengths = torch.randint(max(1, s // 2), s + 1, (b,), generator=gen)  # (B,)
    mask = torch.arange(s)[None, :] < lengths[:, None]  # (B, S) True = real
    memory = memory * mask[..., None]
    summary = memory.sum(1) / lengths[:, None]  # (B, D)
    return EncoderOutput(memory.to(device), mask.to(device), summary.to(device))


def make_decoder(name: str, cfg: dict[str, Any], profile: Profile, device: torch.device) -> Any:
    torch.manual_seed(0)
    model = create_decoder(name, vocab_size=profile.vocab, d_model=profile.d_model, **cfg)
    return model.to(device)


def random_tokens(profile: Profile, batch: int, t: int, device: torch.device, seed: int):
    """(B, t) ids in [4, V) after a BOS: a fixed stand-in for generated text."""
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(4, profile.vocab, (batch, t), generator=gen)  # (B, t)
    tokens[:, 0] = BOS
    return tokens.to(device)


def decode_info(name: str, model: Any, profile: Profile, batch: int) -> dict[str, Any]:
    """Decoder records: which model (use_cache None = it has no cache), and at what size."""
    return {
        "decoder": name, "use_cache": getattr(model, "use_cache", None), "batch": batch,
        "dtype": "float32",
        "d_model": profile.d_model, "vocab": profile.vocab, "mem_len": profile.mem_len,
    }  # fmt: skip


@torch.no_grad()
def test_decode_step(benchmark, decoder_variant, decode_t, device, profile, common_info) -> None:
    """Latency of generating token t: one `step` after a prefix of t-1 steps."""
    name, cfg = decoder_variant
    b, seed = profile.batch, common_info["seed"]
    model = make_decoder(name, cfg, profile, device).eval()
    tokens = random_tokens(profile, b, decode_t, device, seed)  # (B, t)
    state = model.init_state(random_encoder_output(profile, b, device, seed))
    for i in range(decode_t - 1):
        _, state, _ = model.step(state, tokens[:, i])
    benchmark.group = f"decode step {name}"
    benchmark.extra_info.update(kind="decode_step", t=decode_t, **common_info)
    benchmark.extra_info.update(decode_info(name, model, profile, b))

    def setup() -> tuple:  # a fresh copy per round: no step ever sees a state used twice
        return (map_state(state, torch.clone), tokens[:, -1]), {}

    def step(st: Any, token: torch.Tensor) -> None:
        model.step(st, token)

    median = run_timed(benchmark, step, device, profile, setup)
    if median:
        benchmark.extra_info.update(per_token_ms=median * 1e3, tokens_per_s=b / median)


@torch.no_grad()
def test_decode_total(benchmark, decoder_variant, device, profile, common_info) -> None:
    """Time to decode T tokens from scratch (init_state + T steps) for B sequences."""
    name, cfg = decoder_variant
    b, t, seed = profile.batch, profile.decode_total, common_info["seed"]
    model = make_decoder(name, cfg, profile, device).eval()
    tokens = random_tokens(profile, b, t, device, seed)  # (B, T)
    enc = random_encoder_output(profile, b, device, seed)
    benchmark.group = "decode total"
    benchmark.extra_info.update(kind="decode_total", t=t, **decode_info(name, model, profile, b))
    benchmark.extra_info.update(common_info)

    def decode() -> None:
        state = model.init_state(enc)
        for i in range(t):
            _, state, _ = model.step(state, tokens[:, i])

    median = run_timed(benchmark, decode, device, profile)
    if median:
        benchmark.extra_info.update(
            total_ms=median * 1e3, per_token_ms=median * 1e3 / t, tokens_per_s=b * t / median
        )


def test_train_step(benchmark, decoder_name, train_t, device, profile, common_info) -> None:
    """Teacher-forced forward + cross-entropy + backward + AdamW step: tokens per second."""
    b, seed = 2 * profile.batch, common_info["seed"]
    model = make_decoder(decoder_name, {}, profile, device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    enc = random_encoder_output(profile, b, device, seed)
    tokens = random_tokens(profile, b, train_t + 1, device, seed)  # (B, T+1)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T) each
    benchmark.group = "train step"
    benchmark.extra_info.update(kind="train_step", t=train_t, tokens=b * train_t)
    benchmark.extra_info.update(**decode_info(decoder_name, model, profile, b), **common_info)
    # the sweep's own precision (bf16 autocast on CUDA, fp32 elsewhere), so that these tokens/s
    # describe the program the quality sweep runs
    benchmark.extra_info["dtype"] = training_precision(device)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with training_autocast(device):
            logits = model(enc, inputs, need_attn=False).logits  # (B, T, V)
        F.cross_entropy(logits.float().transpose(1, 2), targets).backward()
        opt.step()

    median = run_timed(benchmark, train_step, device, profile)
    if median:
        benchmark.extra_info["tokens_per_s"] = b * train_t / median
