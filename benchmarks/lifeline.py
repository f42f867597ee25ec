"""Child processes that die with their parent, even when the parent is SIGKILLed.

A sweep's pool workers and METEOR JVMs are children of the process that started them. When that
process is killed outright (SIGKILL, the OOM killer), none of its code runs again, so it cannot
stop them: workers would go on computing cells nobody records, each JVM holding a 2 GiB heap.
So each child arranges its own death, set up in the child itself:

- Linux: `prctl(PR_SET_PDEATHSIG, SIGKILL)` (prctl(2)): the kernel kills the child when the
  *thread* that forked it exits, so children must be started from a thread that lives as long as
  its process (the main thread: ProcessPoolExecutor starts spawn workers from `submit`). The
  setting survives `exec`, so a JVM gets it from a `preexec_fn`.
- Python children also poll `os.getppid()` in a daemon thread and exit once re-parented: the
  fallback where prctl does not exist (macOS), and a backstop where it does.

Ctrl-C reaches every process of the terminal's process group. Workers leave it to their driver
(which then kills them): `sigint_blocked` around their start makes them inherit a blocked SIGINT
(the mask survives fork and exec), and `ignore_sigint` in their initializer turns that into
ignoring it, so no Ctrl-C, however early, kills one with a traceback.

A temporary folder cannot die with its owner, so it carries the owner's pid in its name
(`<prefix><pid>-<random>`), and the next run removes the folders whose owner is dead.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 1.0  # how often an orphan-watching thread looks at its parent pid


def _find_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved once at import: a `preexec_fn` runs between fork and exec, where
    loading a library could deadlock on a lock another thread held at the fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # the libc this process already has
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def set_parent_death_signal(parent_pid: int) -> bool:
    """Have the kernel SIGKILL this process when `parent_pid`, its parent, dies; False where
    unsupported. A parent that died before this call (the child was already re-parented) would
    never signal, so then this process kills itself at once."""
    if _PRCTL is None or _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def watch_parent(parent_pid: int, poll_s: float = POLL_S) -> threading.Thread:
    """A daemon thread that ends this process (exit status 1) once `parent_pid` is no longer its
    parent: an orphan is re-parented to init or a subreaper, never back."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)  # no cleanup: whoever would read our results is gone

    thread = threading.Thread(target=watch, name="attnbench-lifeline", daemon=True)
    thread.start()
    return thread


def die_with_parent(parent_pid: int) -> None:
    """In a Python child (a pool worker's initializer): the death signal and the watcher."""
    set_parent_death_signal(parent_pid)
    watch_parent(parent_pid)


def preexec_die_with_parent() -> Callable[[], None]:
    """A `subprocess.Popen(preexec_fn=...)` for a non-Python child (the METEOR JVM): it gets the
    death signal before `exec`. Call this in the parent, from a thread that outlives the child."""
    parent = os.getpid()

    def preexec() -> None:
        set_parent_death_signal(parent)

    return preexec


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while it starts children: a Ctrl-C meanwhile is delivered
    here when the block ends, never lost (multiprocessing starts its resource tracker so)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_sigint() -> None:
    """In a child started under `sigint_blocked`: ignore SIGINT (a pending one is discarded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts: it has not been reaped yet)."""
    try:
        os.kill(pid, 0)  # signal 0 only asks
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


def remove_orphaned_dirs(prefix: str, root: Path | str | None = None) -> list[Path]:
    """Delete the folders `<prefix><pid>-*` under `root` (default: the temp dir) whose process
    `pid` is dead; returns them. A live owner's folder is kept (a reused pid only delays it)."""
    root = Path(root or tempfile.gettempdir())
    owner = re.compile(rf"{re.escape(prefix)}(\d+)-")
    removed = []
    for path in sorted(root.glob(f"{prefix}*")):
        match = owner.match(path.name)
        if match and path.is_dir() and not alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
