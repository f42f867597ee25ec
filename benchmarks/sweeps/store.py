"""The sweep CSV: read every row, rewrite the whole file atomically after each finished cell.

Rewriting the whole file (to a temporary file, then a rename) means a killed sweep leaves the
previous complete file or the new one, never a half-written row of its own making.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from benchmarks.files import write_csv


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole CSV atomically (columns: the union, in first-seen order)."""
    write_csv(path, rows)
