"""`python -m benchmarks quality`: quality vs length, decoder x task x length x seed.

Every cell of a profile gets the same budget (steps, batch, data, d_model) whatever its decoder;
only the learning rate is per decoder (chosen by a short sweep on digits L=2: the Transformer
plateaus at the RNNs' 3e-3 and learns at 1e-3). Batch size shrinks with length so that a step
carries a similar number of target tokens at every length.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.sweeps.cell import Cell
from models.errors import ConfigError

DECODERS = ("rnn", "rnn_attn", "transformer")
LEARNING_RATE = {"rnn": 3e-3, "rnn_attn": 3e-3, "transformer": 1e-3}


@dataclass(frozen=True)
class Profile:
    name: str
    digits_lengths: tuple[int, ...]
    reverse_lengths: tuple[int, ...]
    seeds: tuple[int, ...]
    scan_splits: tuple[str, ...]
    steps: int  # training steps per cell, equal across decoders
    tokens_per_batch: int  # batch size = tokens_per_batch // (L + 1) clamped to batch_range
    batch_range: tuple[int, int] = (16, 32)
    d_model: int = 64
    n_train: int = 2000
    n_eval: int = 200  # val and test examples each
    scan_steps: int = 0  # 0 = same as steps

    @property
    def task_sizes(self) -> dict[str, int]:
        """Split sizes passed to every generated task."""
        return {"n_train": self.n_train, "n_val": self.n_eval, "n_test": self.n_eval}


QUICK = Profile(
    "quick",
    (2, 4),
    (8, 16),
    (0,),
    ("simple",),
    steps=60,
    tokens_per_batch=256,
    d_model=32,
    n_train=300,
    n_eval=50,
)
DEFAULT = Profile(
    "default",
    (2, 4, 8, 16, 32),
    (8, 16, 32, 64, 128),
    (0, 1, 2),
    ("simple", "length"),
    steps=250,
    tokens_per_batch=256,
    n_eval=150,
)
FULL = Profile(
    "full",
    (2, 4, 8, 16, 32),
    (8, 16, 32, 64, 128),
    (0, 1, 2, 3, 4),
    ("simple", "length"),
    steps=3000,
    tokens_per_batch=2048,
    batch_range=(32, 128),
    d_model=128,
    n_train=10000,
    n_eval=500,
)
PROFILES = {p.name: p for p in (QUICK, DEFAULT, FULL)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile '{name}'; choose from {sorted(PROFILES)}")
    return PROFILES[name]


def budget(
    profile: Profile, decoder: str, length: int, seed: int, steps: int | None = None
) -> dict:
    """TrainConfig fields for one cell: equal across decoders except the learning rate."""
    steps = steps or profile.steps
    lo, hi = profile.batch_range
    return {
        "d_model": profile.d_model,
        "batch_size": max(lo, min(hi, profile.tokens_per_batch // (length + 1))),
        "max_steps": steps,
        "warmup_steps": max(1, steps // 10),
        "eval_every": steps,  # one validation pass at the end keeps the sweep cheap
        "lr": LEARNING_RATE.get(decoder, 1e-3),
        "meteor": False,
        "seed": seed,
    }


def quality_cells(profile: Profile) -> list[Cell]:
    cells = []
    sizes = profile.task_sizes
    for seed in profile.seeds:
        for task, lengths in (
            ("digits", profile.digits_lengths),
            ("reverse", profile.reverse_lengths),
        ):
            for length in lengths:
                for dec in DECODERS:
                    train = budget(profile, dec, length, seed)
                    if task == "digits":
                        train["meteor"] = True  # the captioning task reports the COCO metrics
                    cells.append(
                        Cell(
                            "quality",
                            task,
                            {"length": length, "seed": seed, **sizes},
                            dec,
                            train,
                            length=length,
                        )
                    )
    scan_steps = profile.scan_steps or profile.steps
    for split in profile.scan_splits:
        for dec in DECODERS:
            args = {
                "split": split,
                "seed": 0,
                "n_val": profile.n_eval,
                "max_test": 4 * profile.n_eval,
            }
            train = budget(profile, dec, 24, 0, scan_steps)
            cells.append(Cell("quality", "scan", args, dec, train, label=f"scan-{split}"))
    return cells
