"""The sweep CSV: read and check every row, rewrite the whole file atomically after each cell.

Rewriting the whole file (to a temporary file, then a rename) means a killed sweep leaves the
previous complete file or the new one, never a half-written row of its own making. Rows can
still be damaged from outside (a copy cut short, a full disk, an editor), so a resume trusts only
rows that parse and carry every required field (`REQUIRED`: the identity columns of
`cell.identity_row` plus `status`); any other row is dropped, and its cell runs again. The
report reads raw CSVs through the same `read_records`, so it can name the rows it cannot use.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.files import write_csv
from benchmarks.sweeps.cell import Cell, identity_row

# every row of every sweep carries these (cell.identity_row is the one definition) + its status
REQUIRED = (*identity_row(Cell("", "", {}, "", {}), ""), "status")
MAY_BE_EMPTY = {"length", "split", "label"}  # a SCAN cell has no length, an ablation no split...


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used: where it starts in the file, its cell_id if legible, why."""

    line: int
    cell_id: str
    why: str

    def __str__(self) -> str:
        cell = f" (cell {self.cell_id})" if self.cell_id else ""
        return f"line {self.line}{cell}: {self.why}"


Records = list[tuple[int, dict[str, str]]]  # (line the row starts on, row)


def read_records(text: str) -> tuple[Records, list[BadRow], list[str]]:
    """(rows with their line numbers, bad rows, header) of CSV `text`. A row is bad unless it
    has exactly the header's number of fields and ends with a line end: a file cut short loses
    its last row's end, even where the cut falls inside a quoted field or between fields."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    records: list[tuple[int, list[str]]] = []
    start = reader.line_num + 1
    for fields in reader:
        if fields:  # (a blank line is no row)
            records.append((start, fields))
        start = reader.line_num + 1
    rows: Records = []
    bad: list[BadRow] = []
    for k, (line, fields) in enumerate(records):
        row = dict(zip(header, fields, strict=False))
        cell_id = row.get("cell_id", "")
        if len(fields) != len(header):
            bad.append(BadRow(line, cell_id, f"{len(fields)} fields, the header has {len(header)}"))
        elif k == len(records) - 1 and not text.endswith(("\n", "\r")):
            bad.append(BadRow(line, cell_id, "cut short: the file ends inside this row"))
        else:
            rows.append((line, row))
    return rows, bad, header


def row_problem(row: dict[str, str]) -> str | None:
    """Why a parsed sweep row cannot be trusted by a resume, or None when it can."""
    missing = [c for c in REQUIRED if c not in row]
    if missing:
        return f"no column(s) {missing}"
    empty = [c for c in REQUIRED if not row[c] and c not in MAY_BE_EMPTY]
    if empty:
        return f"empty required field(s) {empty}"
    try:
        task_args, train = json.loads(row["task_args"]), json.loads(row["train_cfg"])
        int(row["seed"])
        if row["length"]:
            int(row["length"])
    except ValueError as exc:
        return f"unparsable identity field ({type(exc).__name__}: {exc})"
    if not isinstance(task_args, dict) or not isinstance(train, dict):
        return "task_args and train_cfg must be JSON objects"
    cell = Cell(row["sweep"], row["task"], task_args, row["decoder"], train, row["label"])
    if cell.cell_id != row["cell_id"]:  # the id hashes the identity fields: damage shows
        return f"cell_id does not match its identity fields (they give {cell.cell_id})"
    return None


def read_sweep(path: Path) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """The usable rows of sweep CSV `path` (none when it does not exist), and the bad ones."""
    if not path.exists():
        return [], []
    records, bad, _ = read_records(path.read_text(encoding="utf-8", errors="replace"))
    good = []
    for line, row in records:
        why = row_problem(row)
        if why is None:
            good.append(row)
        else:
            bad.append(BadRow(line, row.get("cell_id", ""), why))
    return good, sorted(bad, key=lambda b: b.line)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The usable rows of sweep CSV `path` (see read_sweep)."""
    return read_sweep(path)[0]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole CSV atomically (columns: the union, in first-seen order)."""
    write_csv(path, rows)
