"""Batching: padding and masks per source kind, teacher-forcing shifts, bucketed batch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import benchmarks.tasks.sequences  # noqa: F401  registers copy / reverse / sort
from benchmarks.harness.batching import CHUNK_BATCHES, Batch, bucket_batches, collate
from benchmarks.tasks.base import Example, load_task
from models.base import BOS, EOS, PAD


def image_ex(width: int, target: list[int]) -> Example:
    return Example(np.full((1, 4, width), 0.5, dtype=np.float32), target, len(target))


def token_ex(n: int, target_len: int) -> Example:
    return Example(np.arange(4, 4 + n, dtype=np.int64), [5] * target_len, target_len)


def test_collate_image_pads_right_and_masks_columns():
    b = collate([image_ex(3, [4]), image_ex(5, [4, 5])], "image")
    assert b.source.shape == (2, 1, 4, 5) and b.source.dtype == torch.float32
    assert b.source_mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert (b.source[0, :, :, 3:] == 0).all() and (b.source[0, :, :, :3] == 0.5).all()


def test_collate_tokens_pads_with_pad_and_masks():
    b = collate([token_ex(2, 1), token_ex(4, 1)], "tokens")
    assert b.source.dtype == torch.long
    assert b.source.tolist() == [[4, 5, PAD, PAD], [4, 5, 6, 7]]
    assert b.source_mask.tolist() == [[True, True, False, False], [True] * 4]


def test_collate_feature_vectors_one_real_position():
    exs = [Example(np.ones(6, dtype=np.float32), [4], 1) for _ in range(3)]
    b = collate(exs, "features")
    assert b.source.shape == (3, 6) and b.source_mask.shape == (3, 1) and b.source_mask.all()


def test_collate_feature_grids_pad_positions():
    exs = [Example(np.ones((s, 6), dtype=np.float32), [4], 1) for s in (2, 5)]
    b = collate(exs, "features")
    assert b.source.shape == (2, 5, 6)
    assert b.source_mask.tolist() == [[True, True, False, False, False], [True] * 5]
    assert (b.source[0, 2:] == 0).all() and (b.source[0, :2] == 1).all()


def test_collate_shifts_targets_for_teacher_forcing():
    b = collate([Example(np.array([4]), [7, 8, 9], 3), Example(np.array([4]), [6], 1)], "tokens")
    assert b.tokens_in.tolist() == [[BOS, 7, 8, 9], [BOS, 6, PAD, PAD]]
    assert b.tokens_out.tolist() == [[7, 8, 9, EOS], [6, EOS, PAD, PAD]]
    assert b.num_target_tokens == 4 + 2 and len(b) == 2


def test_collate_empty_target_is_bos_then_eos():
    b = collate([token_ex(2, 0)], "tokens")
    assert b.tokens_in.tolist() == [[BOS]] and b.tokens_out.tolist() == [[EOS]]


def test_collate_index_defaults_to_positions_and_accepts_dataset_indices():
    exs = [token_ex(2, 1) for _ in range(3)]
    assert collate(exs, "tokens").index.tolist() == [0, 1, 2]
    assert collate(exs, "tokens", index=[7, 2, 9]).index.tolist() == [7, 2, 9]


@pytest.mark.parametrize(
    "examples, kind, text",
    [
        ([], "tokens", "empty"),
        ([image_ex(3, [4]), Example(np.zeros((1, 5, 3), np.float32), [4], 1)], "image", "shapes"),
        ([token_ex(2, 1)], "audio", "audio"),
        (
            [Example(np.ones(6, np.float32), [4], 1), Example(np.ones((2, 6), np.float32), [4], 1)],
            "features",
            "ranks",
        ),
    ],
)
def test_collate_rejects_bad_input(examples, kind, text):
    with pytest.raises(ValueError, match=text):
        collate(examples, kind)


def test_batch_to_moves_every_tensor():
    b = collate([token_ex(2, 1), token_ex(3, 2)], "tokens").to("meta")
    assert isinstance(b, Batch)
    assert all(t.device.type == "meta" for t in vars(b).values())


def mixed_examples(n: int = 1000, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 200, size=n)
    tgt = rng.integers(1, 50, size=n)
    return [token_ex(int(s), int(t)) for s, t in zip(src, tgt, strict=True)]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 32, 5000])
def test_bucket_batches_cover_every_example_once(shuffle, batch_size):
    exs = mixed_examples(300)
    batches = bucket_batches(exs, batch_size, shuffle=shuffle, seed=1)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(exs)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    n_chunks = -(-len(exs) // (batch_size * CHUNK_BATCHES)) if shuffle else 1
    assert sum(len(b) < batch_size for b in batches) <= n_chunks  # one short batch per chunk


def test_bucket_batches_deterministic_per_seed():
    exs = mixed_examples(500)
    a, b = (bucket_batches(exs, 16, shuffle=True, seed=3) for _ in range(2))
    assert a == b
    assert a != bucket_batches(exs, 16, shuffle=True, seed=4)


def test_bucket_batches_unshuffled_in_length_order():
    exs = mixed_examples(200)
    flat = [i for b in bucket_batches(exs, 10, shuffle=False, seed=0) for i in b]
    keys = [(len(exs[i].source), len(exs[i].target)) for i in flat]
    assert keys == sorted(keys)


def padded_source_tokens(exs: list[Example], batches: list[list[int]]) -> int:
    lengths = np.array([len(e.source) for e in exs])
    return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)


def test_bucket_batches_pad_much_less_than_random():
    exs = mixed_examples(2000)
    perm = np.random.default_rng(0).permutation(len(exs))
    random_batches = [perm[i : i + 32].tolist() for i in range(0, len(exs), 32)]
    bucketed = bucket_batches(exs, 32, shuffle=True, seed=0)
    assert padded_source_tokens(exs, bucketed) < 0.1 * padded_source_tokens(exs, random_batches)


def test_bucket_then_collate_real_task():
    data = load_task("reverse", length=6, n_train=40, n_val=5, n_test=5)
    ids = bucket_batches(data.train, 8, shuffle=True, seed=0)[0]
    b = collate([data.train[i] for i in ids], data.source_kind, index=ids)
    assert b.source.shape == (8, 6) and b.source_mask.all()
    assert b.tokens_in.shape == b.tokens_out.shape == (8, 7)
    assert b.index.tolist() == ids
    assert torch.equal(b.tokens_out[:, :-1].flip(1), b.source)  # same words, same ids
