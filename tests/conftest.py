"""Shared fixtures: small random encoder outputs for contract tests. Shapes: B, S, D, T, V."""

from __future__ import annotations

import pytest
import torch

import models  # noqa: F401  (registers everything)
from models.base import EncoderOutput

VOCAB, D_MODEL = 13, 32


def random_encoder_output(b: int = 3, s: int = 5, d: int = D_MODEL, seed: int = 0) -> EncoderOutput:
    """Random memory whose rows have 1..S real positions (row 0 full, the others shorter)."""
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(b, s, d, generator=g)
    lengths = torch.tensor([s] + [max(1, s - i) for i in range(1, b)])
    mask = torch.arange(s).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
    memory = memory * mask.unsqueeze(-1)
    summary = torch.randn(b, d, generator=g)
    return EncoderOutput(memory, mask, summary)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed every test; one torch thread: tiny ops on 2 busy cores run ~40x faster than with 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
