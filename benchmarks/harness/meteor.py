"""METEOR 1.5 (Denkowski & Lavie 2014) through pycocoevalcap: a Java program, run as a JVM that
is always closed after use, dies with this process (even on SIGKILL), and can be kept alive
across the cells of one sweep worker (its start-up costs ~10 s). Library code: never prints.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import threading
from pathlib import Path

from pycocoevalcap.meteor import meteor as pycoco_meteor
from pycocoevalcap.meteor.meteor import Meteor

from benchmarks.lifeline import preexec_die_with_parent

METEOR_TIMEOUT_S = 600.0  # a hung JVM is killed after this; METEOR then reports None


class ClosableMeteor(Meteor):
    """pycocoevalcap's Meteor with an explicit `close`, whose JVM dies with this process.

    Its own `__del__` only runs at garbage collection and first takes a lock that a failed
    `compute_score` leaves held (a deadlock), so we kill the JVM ourselves, lock-free. Its
    `__init__` is pycocoevalcap 1.2's with one change: the JVM gets the parent-death signal
    (benchmarks/lifeline.py), so a SIGKILLed sweep worker or driver never leaves a 2 GiB JVM behind.
    """

    def __init__(self) -> None:
        jar = pycoco_meteor.METEOR_JAR
        self.meteor_cmd = ["java", "-jar", "-Xmx2G", jar, "-", "-", "-stdio", "-l", "en", "-norm"]
        self.meteor_p = subprocess.Popen(
            self.meteor_cmd,
            cwd=Path(pycoco_meteor.__file__).resolve().parent,  # where the jar and its data live
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec_die_with_parent(),
        )
        self.lock = threading.Lock()

    def close(self) -> None:
        proc = getattr(self, "meteor_p", None)  # absent when Popen failed in __init__
        if proc is None:
            return
        self.meteor_p = None
        with contextlib.suppress(OSError):  # flushing into a dead JVM raises BrokenPipeError
            proc.stdin.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    def __del__(self) -> None:
        self.close()


_KEPT: list[ClosableMeteor] = []  # the JVM kept alive by keep_meteor_alive(), if any


def keep_meteor_alive() -> None:
    """Reuse one METEOR JVM for every later call in this process (its start-up costs ~10 s;
    sweeps score many cells). Closed at interpreter exit."""
    if not _KEPT and shutil.which("java") is not None:
        _KEPT.append(ClosableMeteor())
        atexit.register(_KEPT[0].close)


def meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str]:
    """Corpus METEOR from a JVM that is always closed after use, unless kept alive by
    keep_meteor_alive(); (None, reason) when it cannot run."""
    if shutil.which("java") is None:
        return None, "java not found on PATH (METEOR 1.5 is a Java program)"
    kept = bool(_KEPT) and _KEPT[0].meteor_p is not None
    try:
        scorer = _KEPT[0] if kept else ClosableMeteor()
    except OSError as exc:
        return None, f"METEOR could not start java: {exc}"
    proc, fired = scorer.meteor_p, threading.Event()
    timer = threading.Timer(METEOR_TIMEOUT_S, lambda: (fired.set(), proc.kill()))
    timer.start()
    try:
        score, _ = scorer.compute_score(gts, res)
        return float(score), ""
    except (OSError, ValueError) as exc:  # a dead JVM: broken pipe, or an empty line for a float
        proc.kill()
        proc.wait()
        tail = proc.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
        why = f"timed out after {METEOR_TIMEOUT_S:g} s" if fired.is_set() else repr(exc)
        return None, f"METEOR subprocess failed: {why}; java stderr: {' '.join(tail) or '-'}"
    finally:
        timer.cancel()
        if not kept or scorer.meteor_p is None or scorer.meteor_p.poll() is not None:
            scorer.close()
