"""The one contract every decoder honours, so greedy/beam search and the harness are written once.

Shapes: B batch, S memory length, T target length, D width, V vocab. Masks are bool, True = real.
Token ids 0..3 are reserved for every vocabulary (cs231n's COCO convention):
PAD (<NULL>) = 0, BOS (<START>) = 1, EOS (<END>) = 2, UNK = 3.

Incremental decoding follows fairseq's FairseqIncrementalDecoder: `init_state` then `step` one
token at a time, and `reorder_state` so a single beam search serves every decoder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>", "<UNK>")

# Decoder state: a dict whose tensors all have the batch on dim 0 (nested dicts/tuples allowed).
State = dict[str, Any]


@dataclass
class EncoderOutput:
    """What every decoder sees: identical memory for a fair comparison."""

    memory: Tensor  # (B, S, D)
    memory_mask: Tensor  # (B, S) bool, True = real position
    summary: Tensor  # (B, D) the context vector a vanilla seq2seq decoder starts from

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Rows `index` (beam search expands and reorders the batch)."""
        return EncoderOutput(
            self.memory.index_select(0, index),
            self.memory_mask.index_select(0, index),
            self.summary.index_select(0, index),
        )


@dataclass
class DecoderOutput:
    logits: Tensor  # (B, T, V) next-token logits under teacher forcing
    attn: Tensor | None  # (B, T, S) attention over memory (averaged over heads/layers) or None


HOST_READS_FREE = frozenset({"cpu"})  # device types whose tensors the host reads without a sync


def host_reads_free(t: Tensor) -> bool:
    """Whether reading `t` on the host (`bool`, `.item()`, `.tolist()`) is free: on the CPU it
    is; on a GPU it waits for every queued kernel (a device sync), so data-dependent checks are
    made on the CPU before the data moves, and skipped on the device. Tests clear
    HOST_READS_FREE to run the GPU paths on the CPU."""
    return t.device.type in HOST_READS_FREE


def validate_encoder_output(enc: EncoderOutput, d_model: int | None = None) -> None:
    """Reject malformed encoder output where it enters a decoder, with a one-line message.

    A memory row with no valid position would make every softmax over it NaN; we refuse it
    here, once per sequence, instead of paying a data-dependent check inside the kernels. That
    check reads the mask on the host, so it runs only for CPU tensors (free there); on a GPU it
    would be a device sync per forward, and the harness has already checked every batch's
    source mask on the CPU before moving it (`benchmarks/harness/batching.py: check_batch`).
    """
    mem, mask, summary = enc.memory, enc.memory_mask, enc.summary
    if mem.dim() != 3:
        raise ValueError(f"memory must be (B, S, D); got shape {tuple(mem.shape)}")
    b, s, d = mem.shape
    if mask.dtype != torch.bool:
        raise ValueError(f"memory_mask must be bool (True = real); got dtype {mask.dtype}")
    if tuple(mask.shape) != (b, s):
        raise ValueError(f"memory_mask shape {tuple(mask.shape)} does not match memory {(b, s)}")
    if tuple(summary.shape) != (b, d):
        raise ValueError(f"summary shape {tuple(summary.shape)} does not match memory {(b, d)}")
    if d_model is not None and d != d_model:
        raise ValueError(f"memory width {d} does not match decoder d_model {d_model}")
    if not host_reads_free(mask):
        return  # reading the mask back would stall the GPU; the harness checks it on the CPU
    empty = ~mask.any(dim=1)  # (B,)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()[:5]
        raise ValueError(f"memory_mask has no valid position in batch row(s) {rows}")


def map_state(state: Any, fn: Any) -> Any:
    """Apply `fn` to every tensor in a (nested) state."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, EncoderOutput):
        return EncoderOutput(fn(state.memory), fn(state.memory_mask), fn(state.summary))
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(v, fn) for v in state)
    return state


class Decoder(nn.Module, ABC):
    """Teacher-forced `forward` plus incremental `init_state`/`step`/`reorder_state`.

    Declared beside each decoder and read through the registry, so that a new decoder is one
    file: `color`, its matplotlib colour in every figure (None: the next free one), and
    `default_lr`, the AdamW peak learning rate the tuning sweep scales (sweeps/tuning.py).
    """

    vocab_size: int
    d_model: int
    color: ClassVar[str | None] = None
    default_lr: ClassVar[float] = 1e-3

    @abstractmethod
    def forward(self, enc: EncoderOutput, tokens: Tensor, need_attn: bool = True) -> DecoderOutput:
        """tokens (B, T) = [BOS, y1, ..., y_{T-1}] -> logits (B, T, V) predicting y1..yT, and the
        attention (B, T, S) when the decoder has one and `need_attn` (training passes False:
        fused kernels then never form the weights)."""

    @abstractmethod
    def init_state(self, enc: EncoderOutput) -> State:
        """State before the first `step` (which is fed BOS)."""

    @abstractmethod
    def step(self, state: State, token: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """token (B,) -> logits (B, V), new state, attention (B, S) or None."""

    def reorder_state(self, state: State, index: Tensor) -> State:
        """Select batch rows `index` (B',) of every state tensor (all are batch-first)."""
        return map_state(state, lambda t: t.index_select(0, index))
