"""One family of configuration errors, and one way to say an exception in one line.

`ConfigError` (a ValueError) is raised for what a user typed or supplied: an unknown registry
name, an option out of range, a missing file, data of the wrong shape. The CLI catches this
family and nothing else, so any other exception keeps its traceback: it is a bug, not bad input.
Tasks (`TaskError`) and checkpoints (`CheckpointError`) subclass it.
"""

from __future__ import annotations

import traceback
from pathlib import Path

MAX_CHARS = 300  # a row's `error` cell or a one-line message, never a wall of text


class ConfigError(ValueError):
    """Bad input a user can fix; the message is one line naming the flag, file, key or value."""


def one_line(
    exc: BaseException, where: bool = False, limit: int = MAX_CHARS, after: str | None = None
) -> str:
    """`Type: first non-empty line of the message` [` at file.py:line`], at most `limit` chars.

    `where` adds the innermost frame, for rows of failed sweep cells (a bug report in one line);
    `after` skips the message up to a marker (torch.load's weights_only errors open with a
    boilerplate paragraph and name the problem after "WeightsUnpickler error:").
    """
    text = str(exc)
    if after is not None:
        text = text.split(after, 1)[-1]
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"
    frames = traceback.extract_tb(exc.__traceback__)[-1:] if where and exc.__traceback__ else []
    if frames:
        text += f" at {Path(frames[0].filename).name}:{frames[0].lineno}"
    return text[:limit]
