"""Algorithmic sequence tasks: copy, reverse and sort random token sequences of exact length.

Long inputs are where a fixed-size context vector breaks down (Cho et al. 2014; Bahdanau et al.
2015 Fig. 2): `copy` needs the whole input carried through the bottleneck, `reverse` puts the
first input token last (and, with attention, exercises a long anti-diagonal alignment), `sort`
needs a content-based rather than positional alignment.

Source: (S,) int64 ids of `length` symbols w0..w{n-1} (S = length); target: the `length` ids
of the transformed sequence in a separate target vocabulary with the same words. Word order in
both vocabularies is symbol order, so sorting ids sorts symbols. All train, val and test
sequences are distinct, so a test sequence is never seen in training.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.tasks.base import Example, TaskData, TaskError, Vocab, register_task

MAX_LENGTH = 512
MAX_SYMBOLS = 10_000
_ENUMERATE_BELOW = 2_000_000  # a space this small is sampled exactly, by permuting its indices
SPLITS = ("test", "val", "train")  # drawn in this order: test stays fixed when n_train changes

Transform = Callable[[np.ndarray], np.ndarray]  # (L,) symbols -> (L,) source positions to emit


def _enumerated(
    space: int, total: int, length: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """`total` distinct sequences (total, L) of a small space, in a seeded random order."""
    codes = rng.permutation(space)[:total]  # (total,) distinct indices into the space
    powers = n ** np.arange(length - 1, -1, -1, dtype=np.int64)  # (L,)
    return (codes[:, None] // powers) % n  # (total, L) base-n digits


def _rejected(total: int, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`total` distinct sequences (total, L) of a large space: draw, drop repeats, draw again."""
    seen: set[bytes] = set()
    rows: list[np.ndarray] = []
    while len(rows) < total:
        for row in rng.integers(0, n, size=(total - len(rows), length)):  # (k, L)
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return np.stack(rows)


def distinct_sequences(total: int, length: int, num_symbols: int, seed: int) -> np.ndarray:
    """`total` pairwise distinct uniform random sequences (total, L) int64, seeded."""
    space = num_symbols**length  # Python int: exact however large
    if total > space:
        raise TaskError(
            f"{total} distinct sequences requested but only {space} exist "
            f"(num_symbols={num_symbols}, length={length})"
        )
    rng = np.random.default_rng([seed, length, num_symbols])
    if space <= _ENUMERATE_BELOW:
        return _enumerated(space, total, length, num_symbols, rng).astype(np.int64)
    return _rejected(total, length, num_symbols, rng).astype(np.int64)


def _check(length: int, sizes: dict[str, int], num_symbols: int) -> None:
    if not 1 <= length <= MAX_LENGTH:
        raise TaskError(f"length={length} must be in [1, {MAX_LENGTH}]")
    if not 2 <= num_symbols <= MAX_SYMBOLS:
        raise TaskError(f"num_symbols={num_symbols} must be in [2, {MAX_SYMBOLS}]")
    for key, n in sizes.items():
        if n < 1:
            raise TaskError(f"{key}={n} must be >= 1")


def make_sequence_task(
    name: str,
    transform: Transform,
    length: int,
    seed: int,
    sizes: dict[str, int],
    num_symbols: int,
) -> TaskData:
    """Random sequences -> `transform`ed sequences; `sizes` has n_train, n_val, n_test."""
    _check(length, sizes, num_symbols)
    counts = [sizes[f"n_{s}"] for s in SPLITS]
    seqs = distinct_sequences(sum(counts), length, num_symbols, seed)  # (N, L)
    width = len(str(num_symbols - 1))
    words = [f"w{i:0{width}d}" for i in range(num_symbols)]  # zero-padded: w07 sorts before w10
    src, tgt = Vocab.from_words(words), Vocab.from_words(words)
    offset = len(src) - num_symbols  # symbol k has id k + offset (after the specials)
    data: dict[str, list[Example]] = {}
    start = 0
    for split, n in zip(SPLITS, counts, strict=True):
        rows = seqs[start : start + n]  # (n, L)
        start += n
        data[split] = [
            Example(
                source=row + offset,  # (S,) int64
                target=(row[order] + offset).tolist(),
                length=length,
                id=f"{name}-{split}-{k:05d}",
                alignment=[(int(p), int(p) + 1) for p in order],
            )
            for k, row in enumerate(rows)
            for order in [transform(row)]
        ]
    return TaskData(
        name=name,
        source_kind="tokens",
        train=data["train"],
        val=data["val"],
        test=data["test"],
        tgt_vocab=tgt,
        src_vocab=src,
        encoder="text",
        encoder_cfg={"vocab_size": len(src)},
        config={"seed": seed, "length": length, **sizes, "num_symbols": num_symbols},
    )


def _task(name: str, transform: Transform, doc: str) -> Callable[..., TaskData]:
    """Task `name`: the shared generator with its own target `transform`."""

    def task(
        length: int = 16,
        seed: int = 0,
        n_train: int = 4000,
        n_val: int = 200,
        n_test: int = 200,
        num_symbols: int = 20,
    ) -> TaskData:
        sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
        return make_sequence_task(name, transform, length, seed, sizes, num_symbols)

    task.__name__ = task.__qualname__ = name
    task.__doc__ = doc
    return register_task(name)(task)


copy = _task("copy", lambda s: np.arange(len(s)), "Target = the source sequence.")
reverse = _task(
    "reverse", lambda s: np.arange(len(s))[::-1], "Target = the source sequence reversed."
)
sort = _task(
    "sort",
    lambda s: np.argsort(s, kind="stable"),  # equal symbols keep source order
    "Target = the source symbols in ascending order.",
)
