"""pytest-benchmark: training throughput of every decoder beside PyTorch's nn.TransformerDecoder.

One teacher-forced step (forward, cross-entropy, backward, AdamW) at the quality sweep's real
shapes: B=64 sequences, T=32 target tokens, S=32 memory positions, V=20, d_model 128 and the
profile's own d_model, on ONE thread (what each sweep worker gets), all in one run so that ratios
compare like with like. Shapes: B batch, T target length, S memory length, D width, V vocab.

    pytest benchmarks/timing/bench_training.py --device cpu --profile default
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import models  # noqa: F401  (registers every decoder)
from benchmarks.sweeps.profiles import get_profile as get_quality_profile
from benchmarks.timing.bench_attention import random_tokens
from benchmarks.timing.reference_decoder import REFERENCE, TorchTransformerDecoder
from benchmarks.timing.timed import run_timed
from models.base import EncoderOutput
from models.precision import training_autocast, training_precision
from models.registry import create_decoder, list_decoders

BATCH, TARGET_LEN, MEMORY_LEN, VOCAB = 64, 32, 32, 20
THREADS = 1  # the sweep runs one cell per core, each on one thread


def widths(profile_name: str) -> list[int]:
    """d_model 128 (the issue's reference shape) and the quality profile's own width."""
    return sorted({128, get_quality_profile(profile_name).d_model})


def train_cases(profile_name: str) -> list[tuple[str, int]]:
    """(decoder, d_model): every registered decoder and the PyTorch baseline, at each width."""
    names = [*list_decoders(), REFERENCE]
    return [(n, d) for d in widths(profile_name) for n in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "train_case" in metafunc.fixturenames:
        cases = train_cases(metafunc.config.getoption("profile"))
        metafunc.parametrize("train_case", cases, ids=[f"{n}-d{d}" for n, d in cases])


def build(name: str, d_model: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == REFERENCE:
        return TorchTransformerDecoder(VOCAB, d_model).to(device)
    return create_decoder(name, vocab_size=VOCAB, d_model=d_model).to(device)


def memory(d_model: int, device: torch.device, seed: int) -> EncoderOutput:
    """Unpadded random memory (B, S, D), as a batch of equal-length sources gives."""
    gen = torch.Generator().manual_seed(seed)
    mem = torch.randn(BATCH, MEMORY_LEN, d_model, generator=gen)  # (B, S, D)
    mask = torch.ones(BATCH, MEMORY_LEN, dtype=torch.bool)
    return EncoderOutput(mem.to(device), mask.to(device), mem.mean(1).to(device))


def test_train_throughput(benchmark: Any, train_case, device, profile, common_info) -> None:
    """tokens/s of one AdamW training step: B*T target tokens over the median step time."""
    name, d_model = train_case
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        model = build(name, d_model, device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        enc = memory(d_model, device, common_info["seed"])
        tokens = random_tokens(profile, BATCH, TARGET_LEN + 1, device, common_info["seed"])
        tokens = tokens % VOCAB  # (B, T+1) ids of the small vocabulary
        inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T) each

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            with training_autocast(device):  # the sweep's precision: bf16 autocast on CUDA
                logits = model(enc, inputs, need_attn=False).logits  # (B, T, V)
            F.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1)).backward()
            opt.step()

        benchmark.group = f"train throughput d{d_model}"
        benchmark.extra_info.update(
            kind="train_throughput", decoder=name, d_model=d_model, batch=BATCH, t=TARGET_LEN,
            mem_len=MEMORY_LEN, vocab=VOCAB, tokens=BATCH * TARGET_LEN,
            dtype=training_precision(device),
            params=sum(p.numel() for p in model.parameters()), **common_info | {"threads": THREADS},
        )  # fmt: skip
        median = run_timed(benchmark, train_step, device, profile)
        if median:
            benchmark.extra_info["tokens_per_s"] = BATCH * TARGET_LEN / median
    finally:
        torch.set_num_threads(threads)
