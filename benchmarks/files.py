"""Atomic result files: a file is only ever seen whole, with the permissions any file would get.

Every result, checkpoint and table that a killed run could leave half-written goes through
`atomic_write_bytes`: write a temporary file beside the target, fsync it, rename it over the
target (POSIX rename is atomic), so a reader sees the previous file or the new one, never part of
one. `mkstemp` creates its file with mode 0600; the final file gets `0666 & ~umask`, exactly what
`open(path, "w")` would have given it, so atomic and plain writes are indistinguishable.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it: restore at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call write(file_object) on a temporary file beside `path`, fsync, rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    """Indented, key-sorted JSON with a trailing newline (the same data gives the same bytes)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV of `rows`; columns default to the union of the rows' keys in first-seen order."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(
    path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    atomic_write_text(path, csv_text(rows, columns))
