"""Sweep profiles: every size and budget of the quality, tuning and ablation sweeps in one place.

A profile fixes what is equal across decoders: width, data, batch, evaluation cadence, the
stopping rule (target, plateau, step cap). Only each decoder's learning rate and warm-up differ,
and they come from the tuning sweep (sweeps/tuning.py), run at a length that is not a headline
length. `quick` is a smoke run (minutes); `default` is `make bench` on a 2-core CPU (about half an
hour); `full` is the GPU-sized run.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    digits_lengths: tuple[int, ...]  # digits per strip (the captioning task's length dial)
    reverse_lengths: tuple[int, ...]  # tokens to reverse (the bottleneck task's length dial)
    scan_splits: tuple[str, ...]  # SCAN splits: "simple" (our seeded 80/20) and "length"
    seeds: tuple[int, ...]  # every quality cell runs once per seed
    d_model: int = 64  # encoder and decoder width, every decoder
    batch_size: int = 64  # sequences per step, every decoder and length
    n_train: int = 50_000  # generated training sequences (reverse, sort; cheap to make)
    digits_n_train: int = 10_000  # training strips (each costs a render, and memory)
    n_eval: int = 400  # validation and test examples each
    eval_every: int = 100  # steps between greedy validation passes (the curves' resolution)
    target: float = 0.99  # stop once validation exact match reaches this
    patience: int = 6  # ... or after this many evaluations in which neither exact match nor
    min_delta: float = 0.01  # token accuracy gained this much (1 point; above n_eval noise)
    # The learning-rate schedule's horizon (cosine to 10 %), then the step cap, a backstop: a
    # capped cell is marked, never a headline. Between them training goes on at the floor rate,
    # so that a decoder still creeping up when its schedule ends can reach a plateau (measured:
    # the vanilla rnn at reverse L=16, capped at 3,000 when the horizon was the cap, stopped on a
    # plateau at 4,500 steps with the cap at 6,000). A cell that stops before the horizon gives
    # the same row either way. None: the horizon is the cap.
    decay_steps: int | None = 3000
    max_steps: int = 6000
    scan_decay_steps: int | None = 4000
    scan_max_steps: int = 8000  # (measured: rnn_attn reaches 0.99 on simple at ~2,900)
    tune_task: tuple[str, int] = ("reverse", 10)  # the tuning length: not a headline length
    tune_max_steps: int = 1200  # tuning cells not at the target by then rank by val exact match
    tune_lr_factors: tuple[float, ...] = (0.5, 1.0, 2.0)  # x each decoder's registry default
    tune_warmups: tuple[int, ...] = (100, 400)  # linear warm-up steps tried
    ablation_lengths: tuple[int, int] = (8, 16)  # reverse lengths of the ablations (short, mid)
    meteor: bool = True  # METEOR on the digits cells (a JVM per worker: ~10 s to start)

    def task_sizes(self, task: str = "reverse") -> dict[str, int]:
        """Split sizes passed to a generated task. More sequences than steps * batch would use
        keeps the attention decoders from memorising their training set (measured: the
        Transformer plateaued at 0.95 on reverse L=32 with 10,000 and reached 0.99 with 50,000)."""
        n_train = self.digits_n_train if task == "digits" else self.n_train
        return {"n_train": n_train, "n_val": self.n_eval, "n_test": self.n_eval}

    def stopping(
        self, max_steps: int | None = None, decay_steps: int | None = None
    ) -> dict[str, object]:
        """TrainConfig fields of the stopping rule and schedule, identical for every decoder
        (`max_steps` given alone, as tuning does: the horizon is that cap)."""
        return {
            "eval_every": self.eval_every,
            "target_metric": "exact_match",
            "target": self.target,
            "select_metric": "token_accuracy",
            "patience": self.patience,
            "min_delta": self.min_delta,
            "max_steps": max_steps or self.max_steps,
            "decay_steps": decay_steps if max_steps else self.decay_steps,
        }


QUICK = Profile(
    "quick",
    digits_lengths=(2, 4),
    reverse_lengths=(4, 8),
    scan_splits=("simple",),
    seeds=(0,),
    d_model=32,
    batch_size=32,
    n_train=1000,
    digits_n_train=1000,
    n_eval=50,
    eval_every=25,
    patience=3,
    decay_steps=None,
    max_steps=150,
    scan_decay_steps=None,
    scan_max_steps=150,
    tune_max_steps=150,
    tune_task=("reverse", 6),
    tune_lr_factors=(1.0,),
    tune_warmups=(25,),
    ablation_lengths=(4, 8),
    meteor=False,
)
DEFAULT = Profile(
    "default",
    digits_lengths=(2, 4, 8),  # 16: ~5 min a cell on one core (the CNN), in `full` only
    reverse_lengths=(4, 8, 16, 32),
    scan_splits=("simple", "length"),
    seeds=(0, 1),
)
FULL = Profile(
    "full",
    digits_lengths=(2, 4, 8, 16, 32),
    reverse_lengths=(4, 8, 16, 32, 64, 128),
    scan_splits=("simple", "length"),
    seeds=(0, 1, 2, 3, 4),
    d_model=128,
    n_train=100_000,
    digits_n_train=20_000,
    n_eval=1000,
    patience=10,
    min_delta=0.002,
    decay_steps=None,
    max_steps=20_000,
    scan_decay_steps=None,
    scan_max_steps=20_000,
    tune_max_steps=5000,
    tune_task=("reverse", 24),
)
PROFILES = {p.name: p for p in (QUICK, DEFAULT, FULL)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile '{name}'; choose from {sorted(PROFILES)}")
    return PROFILES[name]
