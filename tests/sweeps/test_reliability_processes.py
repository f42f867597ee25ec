"""Nothing outlives a sweep's driver: pool workers, the resource tracker and METEOR JVMs die with
it, even on SIGKILL; its marker folder is removed by the next run; Ctrl-C ends in one line.

Processes are found through /proc (Linux), by parent pid, and told apart from a later process
that reuses a pid by their start time; a zombie counts as dead (only its exit status is left).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
HAS_JAVA = shutil.which("java") is not None
SPAWN_TIMEOUT_S = 120  # workers import torch on 2 busy cores: seconds each
DEATH_TIMEOUT_S = 10

# a sweep of cells that never finish on their own (the driver is killed long before)
KILL_SCRIPT = """
import sys
from pathlib import Path
from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.sweep import run_sweep

if __name__ == "__main__":  # spawn workers import this file again
    meteor = sys.argv[2] == "1"
    cells = [
        Cell("kill", "reverse", {"length": 4, "seed": s, "n_train": 48, "n_val": 8, "n_test": 8},
             "rnn", {"d_model": 16, "batch_size": 8, "max_steps": 10**6, "warmup_steps": 1,
                     "eval_every": 10**6, "meteor": meteor, "seed": s})
        for s in range(4)
    ]
    run_sweep(cells, Path(sys.argv[1]), executor="local", workers=2)
"""


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the name in (...) may hold spaces


def _identity(pid: int) -> str | None:
    """Its start time (stat field 22) while it runs; None when gone or a zombie."""
    fields = _stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every living process below `root`: pid -> start time."""
    children: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        fields = _stat(int(name)) if name.isdigit() else None
        if fields:
            children[int(fields[1])].append(int(name))
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            ident = _identity(pid)
            if ident:
                found[pid] = ident
                todo.append(pid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def wait_for(root: subprocess.Popen, ready, seen: dict[int, str]) -> None:
    """Collect `root`'s descendants into `seen` until ready(commands) holds."""
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while time.monotonic() < deadline and root.poll() is None:
        seen.update(descendants(root.pid))
        if ready([cmdline(p) for p in seen]):
            return
        time.sleep(0.2)
    pytest.fail(f"exit {root.poll()}; started only {[cmdline(p) for p in seen]}")


def survivors(seen: dict[int, str]) -> list[str]:
    """Commands of the processes in `seen` still alive DEATH_TIMEOUT_S from now, at most."""
    deadline = time.monotonic() + DEATH_TIMEOUT_S
    while True:
        alive = [p for p, ident in seen.items() if _identity(p) == ident]
        if not alive or time.monotonic() > deadline:
            return [f"{p}: {cmdline(p)}" for p in alive]
        time.sleep(0.2)


def _kill_all(seen: dict[int, str]) -> None:
    for pid, ident in seen.items():
        if _identity(pid) == ident:
            os.kill(pid, signal.SIGKILL)


def _workers(commands: list[str]) -> int:
    return sum("multiprocessing" in c and "spawn_main" in c for c in commands)


def _sweep_running(commands: list[str]) -> bool:
    """Both workers, the resource tracker, and each worker's METEOR JVM where java exists."""
    jvms = sum(c.startswith("java") for c in commands)
    tracker = any("resource_tracker" in c for c in commands)
    return _workers(commands) >= 2 and tracker and (jvms >= 2 or not HAS_JAVA)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def test_sigkilled_driver_leaves_no_process_and_its_folder_goes_next_run(tmp_path):
    """The issue's leak: 2 workers, a resource tracker, 2 JVMs and an attnbench-cells folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    script = tmp_path / "sweep.py"
    script.write_text(KILL_SCRIPT)
    argv = [sys.executable, str(script), str(tmp_path / "sweep.csv"), "1" if HAS_JAVA else "0"]
    driver = subprocess.Popen(argv, cwd=REPO, env=_env(TMPDIR=str(tmp)))
    seen: dict[int, str] = {}
    try:
        wait_for(driver, _sweep_running, seen)
        driver.kill()  # SIGKILL: nothing runs in the driver any more
        driver.wait()
        left = survivors(seen)
        assert not left, f"alive {DEATH_TIMEOUT_S} s after the driver's SIGKILL: {left}"
    finally:
        driver.kill()
        _kill_all(seen)
    from benchmarks.lifeline import remove_orphaned_dirs
    from benchmarks.sweeps.executors import MARKS_PREFIX

    orphaned = list(tmp.glob(f"{MARKS_PREFIX}*"))
    assert len(orphaned) == 1 and re.fullmatch(rf"{MARKS_PREFIX}{driver.pid}-\w+", orphaned[0].name)
    assert remove_orphaned_dirs(MARKS_PREFIX, tmp) == orphaned  # what the next local sweep does
    assert not orphaned[0].exists()


def test_remove_orphaned_dirs_keeps_a_live_owners_folder(tmp_path):
    from benchmarks.lifeline import remove_orphaned_dirs

    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process now
    mine = tmp_path / f"attnbench-cells-{os.getpid()}-abc"
    gone = tmp_path / f"attnbench-cells-{dead.pid}-def"
    unnamed = tmp_path / "attnbench-cells-xyz"  # no owner in its name: not ours to judge
    for path in (mine, gone, unnamed):
        path.mkdir()
        (path / "marker").touch()
    assert remove_orphaned_dirs("attnbench-cells-", tmp_path) == [gone]
    assert mine.exists() and unnamed.exists() and not gone.exists()


@pytest.mark.skipif(not HAS_JAVA, reason="METEOR needs java")
def test_meteor_jvm_dies_with_its_sigkilled_parent(tmp_path):
    """Even while another process holds its stdin open (as a sweep's other workers do), so no
    end-of-file would ever stop it."""
    script = tmp_path / "jvm.py"
    script.write_text(
        "import os, subprocess, time\n"
        "from benchmarks.harness.meteor import ClosableMeteor\n"
        "m = ClosableMeteor()\n"
        "os.set_inheritable(m.meteor_p.stdin.fileno(), True)\n"
        "holder = subprocess.Popen(['sleep', '120'], close_fds=False)\n"
        "print(m.meteor_p.pid, holder.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True
    )
    jvm, holder = (int(x) for x in parent.stdout.readline().split())
    seen = {pid: _identity(pid) for pid in (jvm, holder)}
    try:
        parent.kill()
        parent.wait()
        left = survivors({jvm: seen[jvm]})
        assert not left, f"METEOR JVM alive after its parent's SIGKILL: {left}"
    finally:
        parent.stdout.close()
        _kill_all(seen)


def test_ctrl_c_ends_a_sweep_in_one_line_and_stops_its_workers(tmp_path):
    from benchmarks.sweeps.profiles import QUICK
    from benchmarks.sweeps.quality import quality_cells

    argv = [sys.executable, "-m", "benchmarks", "quality", "--profile", "quick", "--workers", "2"]
    argv += ["--results", str(tmp_path / "results")]
    # SIGINT's default action, as in a terminal's foreground job: started as a background job
    # of a non-interactive shell, pytest ignores SIGINT, and so would the driver (inherited).
    driver = subprocess.Popen(
        argv, cwd=REPO, env=_env(), start_new_session=True, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    seen: dict[int, str] = {}
    try:
        wait_for(driver, lambda cmds: _workers(cmds) >= 2, seen)
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        _, err = driver.communicate(timeout=60)
        left = survivors(seen)
    finally:
        driver.kill()
        _kill_all(seen)
    total = len(quality_cells(QUICK))
    line = r"interrupted: (\d+) of (\d+) cells done; rerun the same command to resume"
    assert re.fullmatch(line, err.strip()), f"exit {driver.returncode}, stderr {err!r}"
    assert int(re.fullmatch(line, err.strip()).group(2)) == total
    assert driver.returncode == 130
    assert not left, f"alive after Ctrl-C: {left}"
