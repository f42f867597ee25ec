"""SCAN (Lake & Baroni, ICML 2018), generated offline from its grammar: commands -> actions.

Source: command words as ids (S,) of a 13-word vocabulary; target: action ids (T,) of a 6-action
vocabulary. The length dial is the number of actions (1..48).

Grammar (paper Fig. 6) and interpretation (Fig. 7), with the action names of the data files:
    C -> S and S | S after S | S          s1 and s2 = [s1][s2];  s1 after s2 = [s2][s1]
    S -> V twice | V thrice | V           twice / thrice repeat [V]
    V -> D opposite dir | D around dir | D | U
    D -> U left | U right | turn left | turn right
Enumerating it gives exactly the 20,910 commands of the published tasks.txt (tests check its
SHA-256). Splits:
- `length`: the published one, train = action length <= 22 (16,990), test >= 24 (3,920).
- `simple`: the published split is a random 80/20 draw (16,728 / 4,182) that no grammar can
  regenerate, so this is OUR OWN seeded 80/20 split of the same commands; accuracies are
  comparable in kind, not example for example.
In both, `val` is a seeded sample of `n_val` commands carved out of train.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

from benchmarks.tasks.base import (
    DECODE_MARGIN,
    Example,
    TaskData,
    TaskError,
    Vocab,
    register_task,
)

PRIMITIVES = ("walk", "look", "run", "jump")
SRC_WORDS = (
    *PRIMITIVES,
    "turn",
    "left",
    "right",
    "opposite",
    "around",
    "twice",
    "thrice",
    "and",
    "after",
)
ACTIONS = ("I_WALK", "I_LOOK", "I_RUN", "I_JUMP", "I_TURN_LEFT", "I_TURN_RIGHT")
SIMPLE_TRAIN_FRACTION = 0.8
LENGTH_TRAIN_MAX, LENGTH_TEST_MIN = 22, 24  # the published length split; 23 never occurs

Phrase = tuple[str, tuple[str, ...]]  # (command words joined by spaces, actions)


def _verb_phrases() -> list[Phrase]:
    """All 34 V phrases with their meaning."""
    units: list[Phrase] = [(u, (f"I_{u.upper()}",)) for u in PRIMITIVES]
    turn: Phrase = ("turn", ())  # bare "turn" is never a command and contributes no action
    out: list[Phrase] = list(units)
    for x, acts in [*units, turn]:
        for direction in ("left", "right"):
            t = (f"I_TURN_{direction.upper()}",)
            out.append((f"{x} {direction}", t + acts))
            out.append((f"{x} opposite {direction}", t + t + acts))
            out.append((f"{x} around {direction}", (t + acts) * 4))
    return out


def _sentences() -> list[Phrase]:
    """All 102 S phrases: V, V twice, V thrice."""
    out: list[Phrase] = []
    for v, acts in _verb_phrases():
        out += [(v, acts), (f"{v} twice", acts * 2), (f"{v} thrice", acts * 3)]
    return out


@functools.lru_cache(maxsize=1)
def scan_pairs() -> tuple[tuple[str, str], ...]:
    """All 20,910 SCAN (command, actions) pairs, space-separated, in grammar order."""
    sents = _sentences()
    pairs = [(s, a) for s, a in sents]
    for s1, a1 in sents:
        for s2, a2 in sents:
            pairs.append((f"{s1} and {s2}", a1 + a2))
            pairs.append((f"{s1} after {s2}", a2 + a1))  # "after" runs the second part first
    return tuple((c, " ".join(a)) for c, a in pairs)


def _split_indices(
    split: str, seed: int, n_val: int, max_train: int | None, max_test: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices into scan_pairs(); seeded, sorted within each split."""
    pairs = scan_pairs()
    rng = np.random.default_rng([seed, 0x5CA])
    if split == "simple":
        perm = rng.permutation(len(pairs))
        n_train = round(SIMPLE_TRAIN_FRACTION * len(pairs))
        train, test = perm[:n_train], perm[n_train:]
    elif split == "length":
        n_actions = np.array([len(a.split()) for _, a in pairs])
        train = np.flatnonzero(n_actions <= LENGTH_TRAIN_MAX)
        test = np.flatnonzero(n_actions >= LENGTH_TEST_MIN)
    else:
        raise TaskError(f"unknown SCAN split '{split}'; choose from ['simple', 'length']")
    if not 0 <= n_val < len(train):
        raise TaskError(f"n_val={n_val} must be in [0, {len(train)}) for SCAN split '{split}'")
    train = rng.permutation(train)
    val, train = train[:n_val], train[n_val:]
    if max_train is not None:
        if max_train < 1:
            raise TaskError(f"max_train={max_train} must be >= 1")
        train = train[:max_train]  # a prefix of a seeded permutation: a deterministic subsample
    if max_test is not None:
        if max_test < 1:
            raise TaskError(f"max_test={max_test} must be >= 1")
        test = rng.permutation(test)[:max_test]  # drawn after train/val: they do not move
    return np.sort(train), np.sort(val), np.sort(test)


def _examples(idx: np.ndarray, split: str, src: Vocab, tgt: Vocab) -> list[Example]:
    pairs = scan_pairs()
    out = []
    for i in idx:
        command, actions = pairs[i]
        target = tgt.encode(actions.split())
        source = np.array(src.encode(command.split()), dtype=np.int64)  # (S,)
        out.append(Example(source, target, len(target), id=f"scan-{split}-{i:05d}"))
    return out


@register_task("scan")
def scan(
    split: Literal["simple", "length"] = "simple",
    seed: int = 0,
    max_train: int | None = None,
    n_val: int = 500,
    max_test: int | None = None,
) -> TaskData:
    """SCAN `split` (see module docstring); val carved from train; `max_train` caps train and
    `max_test` evaluates on a seeded subsample of the test split (for fast sweeps)."""
    train, val, test = _split_indices(split, seed, n_val, max_train, max_test)
    src, tgt = Vocab.from_words(SRC_WORDS), Vocab.from_words(ACTIONS)
    splits = {"train": train, "val": val, "test": test}
    splits = {name: _examples(idx, name, src, tgt) for name, idx in splits.items()}
    # the length split tests on longer targets than it trains on, by design: decoding must be
    # able to reach them, so the cap comes from every split (all from the grammar, all bounded)
    longest = max(len(e.target) for exs in splits.values() for e in exs)
    return TaskData(
        name="scan",
        source_kind="tokens",
        **splits,
        decode_len=longest + DECODE_MARGIN,
        tgt_vocab=tgt,
        src_vocab=src,
        encoder="text",
        encoder_cfg={"vocab_size": len(src)},
        config={
            "split": split,
            "seed": seed,
            "max_train": max_train,
            "max_test": max_test,
            "n_val": n_val,
            "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        },
    )
