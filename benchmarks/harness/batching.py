"""Batches: padding, masks, teacher-forcing shifts and length-bucketed batch order.

Shapes: B batch, C channels, H height, W width (image columns), S source length, F feature
width, T target length + 1 (BOS or EOS added). Masks are bool, True = real.

    tokens_in  = [BOS, y1, ..., yn, PAD...]   (B, T) what the decoder reads
    tokens_out = [y1, ..., yn, EOS, PAD...]   (B, T) what it must predict

Bucketing (as in fairseq / torchtext BucketIterator): shuffle, then sort by length inside large
chunks so each batch holds similar lengths (little padding) while batch order stays random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from benchmarks.tasks.base import Example, SourceKind
from models.base import BOS, EOS, PAD
from models.errors import ConfigError

CHUNK_BATCHES = 100  # batches per sorted chunk: big enough to bucket well, small enough to mix


@dataclass
class Batch:
    source: Tensor  # image (B, C, H, W) float | tokens (B, S) long | features (B, F) or (B, S, F)
    source_mask: Tensor  # (B, W) | (B, S) | (B, 1) bool, True = real column / token / vector
    tokens_in: Tensor  # (B, T) long, [BOS, y1..yn] PAD-padded
    tokens_out: Tensor  # (B, T) long, [y1..yn, EOS] PAD-padded
    index: Tensor  # (B,) long, positions of these examples in the list they came from

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on `device`. Leaving the CPU, it is checked first (`check`): the models
        check their inputs only where that is free, on CPU tensors, since on a GPU each check
        would be a device sync in the hot path."""
        if torch.device(device).type != "cpu" and self.source_mask.device.type == "cpu":
            self.check()
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def check(self) -> None:
        """What the models would otherwise check on the device, read here on the CPU: every
        row has a real source position (else its attention softmax is NaN), token sources
        have no negative id. Ids past the vocabulary cannot occur: sources are encoded by the
        task's own vocabulary."""
        empty = ~self.source_mask.any(dim=1)  # (B,)
        if bool(empty.any()):
            rows = self.index[empty].tolist()[:5]
            raise ConfigError(f"examples {rows} have an empty source (no real position)")
        if not self.source.is_floating_point() and bool((self.source < 0).any()):
            raise ConfigError(f"negative source token id {int(self.source.min())}")

    @property
    def num_target_tokens(self) -> int:
        """Tokens the loss is taken over (non-PAD in tokens_out, EOS included). Read it before
        `to(device)`: on a GPU batch it is a device sync."""
        return int((self.tokens_out != PAD).sum())

    def __len__(self) -> int:
        return self.tokens_in.shape[0]


def _pad_last(arrays: Sequence[np.ndarray], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Right-pad arrays (..., L_i) along their last axis with 0 -> ((B, ..., L), mask (B, L))."""
    lengths = [a.shape[-1] for a in arrays]
    out = torch.zeros((len(arrays), *arrays[0].shape[:-1], max(lengths)), dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = torch.as_tensor(a)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (B, L)
    return out, mask


def _check_same(arrays: Sequence[np.ndarray], dims: slice, what: str) -> None:
    shapes = {a.shape[dims] for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{what} shapes differ within a batch: {sorted(shapes)}")


def collate_sources(
    sources: Sequence[np.ndarray], source_kind: SourceKind
) -> tuple[Tensor, Tensor]:
    """Pad sources of one kind -> (source, source_mask); see the Batch field comments."""
    if source_kind == "image":
        _check_same(sources, slice(0, 2), "image (C, H)")
        return _pad_last(sources, torch.float32)  # (B, C, H, W), (B, W)
    if source_kind == "tokens":
        return _pad_last(sources, torch.long)  # (B, S), (B, S) PAD = 0
    if source_kind == "features":
        ranks = {a.ndim for a in sources}
        if ranks == {1}:
            _check_same(sources, slice(0, 1), "feature (F,)")
            x = torch.as_tensor(np.stack(sources), dtype=torch.float32)  # (B, F)
            return x, torch.ones(len(sources), 1, dtype=torch.bool)  # (B, 1): one real vector
        if ranks == {2}:
            _check_same(sources, slice(1, 2), "feature (S, F)")
            x, mask = _pad_last([a.T for a in sources], torch.float32)  # (B, F, S), (B, S)
            return x.transpose(1, 2).contiguous(), mask  # (B, S, F)
        raise ValueError(f"features must all be (F,) or all (S, F); got ranks {sorted(ranks)}")
    raise ValueError(f"unknown source_kind '{source_kind}'; choose from image, tokens, features")


def collate(
    examples: Sequence[Example], source_kind: SourceKind, index: Sequence[int] | None = None
) -> Batch:
    """Pad `examples` into a Batch; `index` = their positions in the dataset (default 0..B-1)."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    source, source_mask = collate_sources([e.source for e in examples], source_kind)
    tokens_in, _ = _pad_last(
        [np.array([BOS, *e.target], dtype=np.int64) for e in examples], torch.long
    )
    tokens_out, _ = _pad_last(
        [np.array([*e.target, EOS], dtype=np.int64) for e in examples], torch.long
    )
    idx = torch.arange(len(examples)) if index is None else torch.as_tensor(index, dtype=torch.long)
    if idx.shape != (len(examples),):
        raise ValueError(f"index has shape {tuple(idx.shape)}; expected ({len(examples)},)")
    return Batch(source, source_mask, tokens_in, tokens_out, idx)


def source_length(example: Example) -> int:
    """Positions of an example's source: image columns, tokens, feature vectors."""
    src = example.source
    if src.ndim == 3:  # image (C, H, W)
        return int(src.shape[-1])
    if src.ndim == 2:  # features (S, F)
        return int(src.shape[0])
    return len(src) if np.issubdtype(src.dtype, np.integer) else 1  # tokens (S,) | features (F,)


def bucket_batches(
    examples: Sequence[Example], batch_size: int, shuffle: bool, seed: int = 0
) -> list[list[int]]:
    """Index batches covering every example once, grouped by (source, target) length.

    shuffle=True: seeded shuffle, sort within chunks of CHUNK_BATCHES batches, shuffled batch
    order (training). shuffle=False: one global length sort in order, `seed` unused (evaluation:
    the least padding; Batch.index maps outputs back).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    keys = np.array([(source_length(e), len(e.target)) for e in examples], dtype=np.int64)
    keys = keys.reshape(-1, 2)  # (N, 2) even when N = 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples)) if shuffle else np.arange(len(examples))
    chunk = batch_size * CHUNK_BATCHES if shuffle else max(len(examples), 1)
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        # lexsort sorts by its last key first; stable, so equal lengths keep the shuffled order
        part = part[np.lexsort((keys[part, 1], keys[part, 0]))]
        batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
