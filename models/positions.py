"""Sinusoidal positions (Vaswani et al. 2017 §3.5), shared by the Transformer decoder's inputs
and the image encoder's memory grid. Shapes: L positions, D width."""

from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_table(max_len: int, d: int) -> Tensor:
    """(max_len, D): PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(same)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    div = torch.pow(10000.0, torch.arange(0, d, 2, dtype=torch.float32) / d)  # (ceil(D/2),)
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(pos / div)
    pe[:, 1::2] = torch.cos(pos / div)[:, : d // 2]  # odd D has one cos column fewer
    return pe
