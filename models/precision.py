"""Which modules run in which dtype under autocast.

Autocast (bf16 on CUDA in the harness) would send the fused recurrent kernels somewhere we did
not ask: on CUDA, PyTorch's autocast wrapper for the cuDNN RNN (`_cudnn_rnn`,
aten/src/ATen/native/cudnn/AutocastRNN.cpp) casts to fp16 whatever the autocast dtype, and there
is no GradScaler, so "bf16 training" would silently train the GRUs in fp16. On the CPU, autocast
lists `mkldnn_rnn_layer` among its lower-precision ops (bf16). A recurrence also compounds
rounding over T steps. So every fused RNN (the `rnn` decoder's cell, the text encoder's BiGRU)
and the attention GRU's recurrence run in fp32, autocast off, inputs cast to fp32; everything
around them (projections, attention kernels, the vocabulary layer) stays under autocast.
"""

from __future__ import annotations

import torch


def fp32_rnn(device: torch.device) -> torch.autocast:
    """A region where autocast is off on `device`'s type: run the recurrence in fp32 inside it
    (its inputs must be fp32 already; autocast off does not cast them back)."""
    return torch.autocast(device_type=device.type, enabled=False)


def training_autocast(device: torch.device) -> torch.autocast:
    """The harness's training precision: bf16 autocast on CUDA, off elsewhere (CPU autocast was
    slower than fp32 for these small models). The training-step benchmark runs under the same."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def training_precision(device: torch.device) -> str:
    """What `training_autocast` means on `device`, as recorded beside every training figure."""
    return "bf16 autocast (fused RNNs fp32)" if device.type == "cuda" else "fp32"
