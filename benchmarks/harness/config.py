"""`TrainConfig`: every knob of one training run, checked when it is made, before any work.

A bad value fails here with one line naming the field and the value (a `ConfigError`), so
`--eval-every 0` or `--clip-norm -1` never reaches the training loop, and `--select-metric bleu4`
is refused before training instead of after it.

The stopping rule (what makes a quality number a result): training ends at the first of
  target   the validation `target_metric` reaches `target` (exact match 0.99 in the sweeps);
  plateau  `patience` evaluations in a row in which neither `target_metric` nor
           `select_metric` improved on its best by more than `min_delta`;
  cap      `max_steps` (the backstop: a capped run measures the budget, not the decoder).
The plateau watches exact match AND token accuracy: a decoder whose exact match sits at 0 while
its tokens improve is learning, and so is one whose token accuracy is saturated near 1 while its
exact match climbs. The weights returned are the best by (target_metric, select_metric).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.registry import accepted_keys, decoder_class

# Validation metrics the stopping rule can watch, and whether larger is better. Only these are
# computed at every evaluation (greedy decoding of the validation split; no caption metrics).
SELECT_METRICS = {
    "exact_match": True,
    "token_accuracy": True,
    "tf_token_accuracy": True,
    "nll_per_token": False,
}
HARNESS_KEYS = ("vocab_size", "d_model", "dropout")  # passed to every decoder by the harness
STOP_REASONS = ("target", "plateau", "cap")


@dataclass
class TrainConfig:
    decoder: str = "rnn_attn"  # registry name: rnn | rnn_attn | transformer
    decoder_cfg: dict[str, Any] = field(default_factory=dict)  # decoder options (cell, kernel...)
    d_model: int = 128  # width of encoder memory and decoder
    dropout: float = 0.0
    batch_size: int = 64
    max_steps: int = 1000  # the step cap: the stopping rule's backstop, equal across decoders
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10 % of lr at decay_steps
    # the schedule's horizon, apart from the cap (None: max_steps): a cap past it trains on at
    # 10 % of lr, so raising the cap leaves every step before decay_steps exactly as it was
    decay_steps: int | None = None
    clip_norm: float = 1.0  # gradient-norm clipping (> 0)
    label_smoothing: float = 0.0
    eval_every: int = 250  # steps between greedy validation passes
    select_metric: str = "token_accuracy"  # plateau and best weights, beside target_metric
    target_metric: str = "exact_match"  # validation metric the target applies to
    target: float | None = None  # stop once target_metric reaches this (None: no target)
    patience: int = 0  # plateau: stop after this many evaluations without improvement (0: never)
    min_delta: float = 0.0  # what counts as an improvement for the plateau rule
    beam_size: int = 1  # test-time decoding (1 = greedy)
    meteor: bool = True  # METEOR starts a JVM per evaluation; off for fast sweeps
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | mps | auto
    checkpoint_dir: str | None = None  # where last.pt is written; a run there resumes from it

    def __post_init__(self) -> None:
        check_config(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, name: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: must be {what}")


def check_config(cfg: TrainConfig) -> None:
    """Every field in range, the decoder registered and its options known; else ConfigError."""
    for name in ("d_model", "batch_size", "max_steps", "eval_every", "beam_size"):
        value = getattr(cfg, name)
        _require(_is_int(value) and value >= 1, name, value, "an integer >= 1")
    if cfg.decay_steps is not None:
        _require(_is_int(cfg.decay_steps) and cfg.decay_steps >= 1, "decay_steps",
                 cfg.decay_steps, "an integer >= 1 (or None: max_steps)")  # fmt: skip
    for name in ("warmup_steps", "patience", "seed"):
        value = getattr(cfg, name)
        _require(_is_int(value) and value >= 0, name, value, "an integer >= 0")
    number = {
        "lr": (lambda v: v >= 0, ">= 0"),
        "weight_decay": (lambda v: v >= 0, ">= 0"),
        "clip_norm": (lambda v: v > 0, "> 0"),
        "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "min_delta": (lambda v: v >= 0, ">= 0"),
    }
    for name, (ok, what) in number.items():
        value = getattr(cfg, name)
        _require(_is_number(value) and ok(value), name, value, f"a finite number {what}")
    _require(isinstance(cfg.meteor, bool), "meteor", cfg.meteor, "true or false")
    for name in ("select_metric", "target_metric"):
        if getattr(cfg, name) not in SELECT_METRICS:
            raise ConfigError(
                f"{name}={getattr(cfg, name)!r}: choose from {sorted(SELECT_METRICS)} "
                "(the metrics every validation pass computes)"
            )
    if cfg.target is not None:
        _require(_is_number(cfg.target), "target", cfg.target, "a finite number or None")
    _check_decoder(cfg)
    _check_device(cfg.device)
    if cfg.checkpoint_dir is not None:
        check_writable_dir(Path(cfg.checkpoint_dir), "checkpoint_dir")


def _check_decoder(cfg: TrainConfig) -> None:
    factory = decoder_class(cfg.decoder)  # ConfigError listing the choices
    if not isinstance(cfg.decoder_cfg, dict):
        raise ConfigError(f"decoder_cfg must be a dict of options; got {cfg.decoder_cfg!r}")
    owned = sorted(set(cfg.decoder_cfg) & set(HARNESS_KEYS))
    if owned:
        raise ConfigError(f"decoder option(s) {owned} are set by the harness; use --d-model etc.")
    unknown = sorted(set(cfg.decoder_cfg) - set(accepted_keys(factory)))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} for decoder '{cfg.decoder}'; "
            f"accepted: {accepted_keys(factory)}"
        )


def _check_device(name: str) -> None:
    from benchmarks.timing.devices import resolve_device  # imports torch's device probes

    resolve_device(name)


def check_writable_dir(path: Path, flag: str) -> None:
    """`path` is, or can become, a directory this process may write into."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} is not writable (checked {probe})")


def config_fields() -> list[str]:
    return [f.name for f in fields(TrainConfig)]
