"""Atomic checkpoints: state dicts + config + vocabulary, loaded with weights_only=True.

A checkpoint is only ever visible complete (written to a temporary file, then os.replace), so a
killed run leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmarks.files import atomic_write_bytes
from models.errors import ConfigError, one_line


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable or belongs to another model/vocabulary."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        detail = one_line(exc, after="WeightsUnpickler error:")
        raise CheckpointError(f"cannot read checkpoint {path}: {detail}") from None


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """module.load_state_dict(state), refusing weights of another shape with a one-line error
    (torch's own message spans a line per mismatched tensor)."""
    own = module.state_dict()
    missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, tensor in own.items():
        if state[key].shape != tensor.shape:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: '{key}' is "
                f"{tuple(state[key].shape)} there, {tuple(tensor.shape)} here"
            )
    module.load_state_dict(state)


def check_compatible(ckpt: dict[str, Any], decoder: str, vocab: list[str], path: Path) -> None:
    """Refuse a checkpoint of another decoder or vocabulary with a one-line message."""
    if ckpt.get("decoder") != decoder:
        raise CheckpointError(
            f"checkpoint {path} is for decoder '{ckpt.get('decoder')}', not '{decoder}'"
        )
    theirs = ckpt.get("vocab", [])
    if theirs != vocab:
        first = next(
            (i for i, (a, b) in enumerate(zip(theirs, vocab, strict=False)) if a != b), None
        )
        where = f"first difference at id {first}" if first is not None else "different sizes"
        raise CheckpointError(
            f"checkpoint {path} has a different vocabulary "
            f"({len(theirs)} vs {len(vocab)} words, {where})"
        )
