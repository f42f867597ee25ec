"""Progress of a sweep: cells done / total, elapsed time, ETA, and the last cell's result.

On a terminal this is a tqdm bar whose postfix is the last cell's one-line result; elsewhere
(`make bench > log`, CI) one plain line per finished cell with the same fields, so a log file
reads as a table rather than a stream of carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm


def row_summary(row: dict[str, Any]) -> str:
    """What a finished cell measured, in one line: where, which decoder, how it stopped."""
    dial = row.get("length") or row.get("split") or row.get("label")
    what = f"{row.get('task')} {dial} {row.get('decoder')} {row.get('label') or ''}".rstrip()
    what += f" seed={row.get('seed')}"
    if row.get("status") != "ok":
        return f"{what}: {row.get('status')} {row.get('error', '')}"[:160]
    em, steps = float(row["exact_match"]), int(float(row["steps"]))
    return f"{what}: exact match {em:.3f}, {row.get('stop_reason')} at {steps} steps"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


class SweepProgress:
    """Call with each finished row; `close()` at the end."""

    def __init__(self, phase: str, total: int, done: int = 0, stream: TextIO = sys.stdout) -> None:
        self.phase, self.total, self.done, self.new = phase, total, done, 0
        self.stream, self.start = stream, time.perf_counter()
        self.bar = None
        if stream.isatty():
            self.bar = tqdm(total=total, initial=done, desc=phase, file=stream, dynamic_ncols=True)

    def __call__(self, row: dict[str, Any]) -> None:
        self.done, self.new = self.done + 1, self.new + 1
        summary = row_summary(row)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(summary, refresh=True)
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.new * (self.total - self.done)
        print(
            f"[{self.phase} {self.done}/{self.total} | {_clock(elapsed)} elapsed | "
            f"ETA {_clock(eta)}] {summary}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
