"""Digit strips: a real image-captioning task with exact control over caption length.

Each example is a strip of `length` handwritten 8x8 digits from scikit-learn's bundled
`load_digits()` (UCI optical digits, Alpaydin & Kaynak 1998; no download), captioned with the digit
words ("three one four"). Think of it as a tiny, length-controlled Show, Attend and Tell
(Xu et al. 2015): attention should slide along the strip as the caption advances.

Source: (1, H, W) float32 in [0, 1], H = CANVAS_HEIGHT, W = 8 * length + gaps (0..2 px each).
Target: `length` word ids of `Vocab.from_words(DIGIT_WORDS)`.
Train, val and test strips draw their digits from DISJOINT pools of the 1,797 images (a seeded
split stratified by label), so test captions are of handwriting never seen in training. Each
example's id records the image indices it was built from: "<split>-<n>:<i1>.<i2>...".
"""

from __future__ import annotations

import functools

import numpy as np

from benchmarks.tasks.base import Example, TaskData, TaskError, Vocab, register_task

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_SIZE = 8  # load_digits images are 8x8, values 0..16
CANVAS_HEIGHT = DIGIT_SIZE + 2  # room for the +-1 px vertical jitter
MAX_GAP = 2  # horizontal gap between neighbouring digits: 0..MAX_GAP px
MAX_LENGTH = 64
POOL_FRACTIONS = (0.7, 0.15, 0.15)  # train / val / test shares of each digit class's images
SPLITS = ("train", "val", "test")


@functools.lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 8, 8) float32 in [0, 1], labels (N,) int64), N = 1,797."""
    from sklearn.datasets import load_digits  # imported lazily: only this task needs sklearn

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)  # (N, 8, 8)
    images.setflags(write=False)  # cached and shared: nobody may modify it
    labels = d.target.astype(np.int64)  # (N,)
    labels.setflags(write=False)
    return images, labels


def image_pools(seed: int) -> dict[str, np.ndarray]:
    """Disjoint train/val/test pools of image indices, stratified by label, seeded."""
    _, labels = digit_images()
    rng = np.random.default_rng([seed, 0xD161])
    pools: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(len(DIGIT_WORDS)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = round(POOL_FRACTIONS[0] * len(idx))
        n_val = round(POOL_FRACTIONS[1] * len(idx))
        cuts = np.split(idx, [n_train, n_train + n_val])
        for s, part in zip(SPLITS, cuts, strict=True):
            pools[s].append(part)
    return {s: np.sort(np.concatenate(p)) for s, p in pools.items()}


def render_strip(
    images: np.ndarray, rng: np.random.Generator, noise: float, noise_rng: np.random.Generator
) -> np.ndarray:
    """Lay out `images` (L, 8, 8) left to right with random gaps and jitter
    -> strip (1, H, W) and each digit's left column (L,)."""
    n = len(images)
    gaps = rng.integers(0, MAX_GAP + 1, size=max(n - 1, 0))  # (L-1,)
    jitter = rng.integers(-1, 2, size=n)  # (L,) rows up/down from the centred position
    lefts = np.concatenate([[0], np.cumsum(DIGIT_SIZE + gaps)])  # (L,) left column of each digit
    width = int(lefts[-1]) + DIGIT_SIZE
    canvas = np.zeros((CANVAS_HEIGHT, width), dtype=np.float32)  # (H, W)
    for img, x, dy in zip(images, lefts, jitter, strict=True):
        y = 1 + int(dy)
        canvas[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE] = img
    if noise > 0:
        canvas += noise_rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
        np.clip(canvas, 0.0, 1.0, out=canvas)  # keep the documented [0, 1] range
    return canvas[None], lefts  # (1, H, W), (L,)


def _make_split(
    split: str, pool: np.ndarray, n: int, length: int, seed: int, noise: float, vocab: Vocab
) -> list[Example]:
    images, labels = digit_images()
    # One stream per split: the test set does not change when n_train does.
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    # Noise from its own stream: the same digits and layout at every noise level.
    noise_rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    out = []
    for k in range(n):
        idx = rng.choice(pool, size=length)  # (L,) with replacement: pools are finite
        source, lefts = render_strip(images[idx], rng, noise, noise_rng)
        target = vocab.encode([DIGIT_WORDS[labels[i]] for i in idx])
        uid = f"{split}-{k:05d}:" + ".".join(str(i) for i in idx)
        spans = [(int(x), int(x) + DIGIT_SIZE) for x in lefts[:length]]  # pixel columns
        out.append(Example(source, target, length, id=uid, alignment=spans))
    return out


def _check(length: int, sizes: dict[str, int], noise: float) -> None:
    if not 1 <= length <= MAX_LENGTH:
        raise TaskError(f"digits length={length} must be in [1, {MAX_LENGTH}]")
    for key, n in sizes.items():
        if n < 1:
            raise TaskError(f"digits {key}={n} must be >= 1")
    if noise < 0:
        raise TaskError(f"digits noise={noise} must be >= 0")


@register_task("digits")
def digits(
    length: int = 4,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 200,
    noise: float = 0.05,
) -> TaskData:
    """Strips of `length` handwritten digits captioned with their words (module docstring)."""
    sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    _check(length, sizes, noise)
    vocab = Vocab.from_words(DIGIT_WORDS)
    pools = image_pools(seed)
    data = {
        s: _make_split(s, pools[s], n, length, seed, noise, vocab)
        for s, n in zip(SPLITS, sizes.values(), strict=True)
    }
    return TaskData(
        name="digits",
        source_kind="image",
        train=data["train"],
        val=data["val"],
        test=data["test"],
        tgt_vocab=vocab,
        src_vocab=None,
        encoder="image_grid",
        encoder_cfg={"in_channels": 1, "height": CANVAS_HEIGHT},
        config={
            "seed": seed,
            "length": length,
            **sizes,
            "noise": noise,
            "pool_sizes": {s: len(p) for s, p in pools.items()},
        },
    )
