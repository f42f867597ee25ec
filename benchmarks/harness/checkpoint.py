"""Atomic checkpoints: state dicts + config + vocabulary, loaded with weights_only=True.

A checkpoint is only ever visible complete (written to a temporary file, then os.replace), so a
killed run leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or belongs to another model/vocabulary."""


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call write(file_object) on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(exc)}") from None


def _one_line(exc: Exception) -> str:
    """The informative line of a torch.load error (weights_only errors span several lines)."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"


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
