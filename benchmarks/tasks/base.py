"""What every task yields: tokenised examples with their controlled length, and its vocabulary.

A task is a function registered with `@register_task("name")` that returns a `TaskData`,
deterministic from its seed. Token ids 0..3 are the reserved specials of models.base
(PAD/<NULL>=0, BOS/<START>=1, EOS/<END>=2, UNK=3) in every vocabulary, source and target.
`load_task` checks every argument against the task function's annotations first, so a value of
the wrong type is refused naming its key, before the task compares it with anything.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.base import EOS, SPECIAL_TOKENS, UNK
from models.errors import ConfigError

SourceKind = Literal["image", "tokens", "features"]
# Greedy and beam search stop here even if EOS never comes: a decoder may run this many tokens
# past the longest target it was trained on (a cap from training data, never from the split
# being decoded, so one absurd reference cannot make decoding run for ever).
DECODE_MARGIN = 5


class TaskError(ConfigError):
    """Bad task input (file, key, shape, value); the message is one line naming the problem."""


@dataclass
class Vocab:
    """Word <-> id map whose first four entries are the reserved specials."""

    idx_to_word: list[str]

    def __post_init__(self) -> None:
        if tuple(self.idx_to_word[:4]) != SPECIAL_TOKENS:
            raise TaskError(
                f"vocab must start with {list(SPECIAL_TOKENS)}; got {self.idx_to_word[:4]}"
            )
        self.word_to_idx = {w: i for i, w in enumerate(self.idx_to_word)}
        if len(self.word_to_idx) != len(self.idx_to_word):
            raise TaskError("vocab has duplicate words")

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocab:
        """Specials first, then `words` in the order given (duplicates dropped)."""
        seen = dict.fromkeys(w for w in words if w not in SPECIAL_TOKENS)
        return cls(list(SPECIAL_TOKENS) + list(seen))

    def __len__(self) -> int:
        return len(self.idx_to_word)

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.word_to_idx.get(w, UNK) for w in words]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Words of `ids` up to the first EOS, specials dropped."""
        words = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIAL_TOKENS):
                words.append(self.idx_to_word[i])
        return words


@dataclass
class Example:
    source: (
        np.ndarray
    )  # image (C, H, W) float32 | tokens (S,) int64 | features (F,) or (S, F) float32
    target: list[int]  # target token ids, no BOS/EOS
    length: int  # the task's length dial for this example (digits per strip, tokens, actions)
    references: list[list[int]] | None = None  # all reference captions (metrics); None = [target]
    id: str = ""
    # per target token, the [start, end) source span that produced it (pixel columns for images,
    # token positions for token sources); None where a task has no ground-truth alignment
    alignment: list[tuple[int, int]] | None = None


@dataclass
class TaskData:
    name: str
    source_kind: SourceKind
    train: list[Example]
    val: list[Example]
    test: list[Example]
    tgt_vocab: Vocab
    src_vocab: Vocab | None  # tokens tasks only
    encoder: str  # models registry name: "image_grid" | "text" | "features"
    encoder_cfg: dict[str, Any] = field(default_factory=dict)  # besides d_model
    config: dict[str, Any] = field(default_factory=dict)  # how it was made (seed, length, ...)
    # longest output decoding may produce; None: the longest training target + DECODE_MARGIN.
    # Set by generated tasks whose test targets are longer than any training target by design
    decode_len: int | None = None

    @property
    def max_target_len(self) -> int:
        return max(len(e.target) for e in self.train + self.val + self.test)

    @property
    def max_decode_len(self) -> int:
        """Decoding's length cap (tokens, EOS included), derived from the task, not the split."""
        if self.decode_len is not None:
            return self.decode_len
        return max(len(e.target) for e in self.train) + DECODE_MARGIN


_TASKS: dict[str, Callable[..., TaskData]] = {}


def register_task(name: str) -> Callable[[Callable[..., TaskData]], Callable[..., TaskData]]:
    def wrap(fn: Callable[..., TaskData]) -> Callable[..., TaskData]:
        _TASKS[name] = fn
        return fn

    return wrap


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def load_task(name: str, **cfg: Any) -> TaskData:
    """Build task `name`; unknown names or config keys fail fast and list the choices."""
    if name not in _TASKS:
        raise TaskError(f"unknown task '{name}'; choose from {list_tasks()}")
    fn = _TASKS[name]
    keys = list(inspect.signature(fn).parameters)
    unknown = sorted(set(cfg) - set(keys))
    if unknown:
        raise TaskError(f"unknown config key(s) {unknown} for task '{name}'; accepted: {keys}")
    hints = typing.get_type_hints(fn)
    for key, value in cfg.items():
        if key in hints and not _fits(hints[key], value):
            raise TaskError(f"task '{name}': {key}={value!r} must be {_describe(hints[key])}")
    return fn(**cfg)


def _fits(hint: Any, value: Any) -> bool:
    """Whether `value` (as JSON gives it: bool, int, float, str, None, list, dict) has the
    annotated type. An annotation this does not know lets the task check the value itself."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_fits(h, value) for h in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float) and isinstance(value, bool):
        return False  # a bool is an int to Python, never a count or a fraction to a user
    if hint is int:
        return isinstance(value, int)
    if hint is float:
        return isinstance(value, int | float) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True


def _describe(hint: Any) -> str:
    """`int | None` -> 'an integer or null': what a user should have typed."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return f"one of {list(typing.get_args(hint))}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, "null" if hint is type(None) else str(hint))
