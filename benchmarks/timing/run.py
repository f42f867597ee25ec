"""`python -m benchmarks kernels`: time every case with pytest-benchmark, then measure memory.

Writes results/raw/kernels_<device>.json (pytest-benchmark's JSON of bench_attention.py and
bench_training.py, one run) and kernel_memory_<device>.csv (fresh-process peaks, under glibc's
defaults and, at the profile's `returned_ns`, with freed memory returned to the OS).

Every run compiles into a fresh, empty inductor cache (shared by the timing run and the memory
workers), so the compile times it reports are cold compiles, the same on every run, never a
cache hit left by an earlier run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.files import write_csv
from benchmarks.lifeline import preexec_die_with_parent
from benchmarks.timing.cases import get_profile, memory_cases
from benchmarks.timing.devices import REPO_ROOT, resolve_device
from benchmarks.timing.memory import CSV_COLUMNS, measure_memory

BENCH_FILES = [Path(__file__).with_name(f) for f in ("bench_attention.py", "bench_training.py")]
COMPILE_CACHE = "TORCHINDUCTOR_CACHE_DIR"  # where inductor keeps compiled kernels


def run_kernels(device: str, profile: str, out_dir: Path, seed: int = 0) -> list[Path]:
    """Time every case with pytest-benchmark, then measure peak memory; return the files written."""
    dev, prof = resolve_device(device), get_profile(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"kernels_{dev.type}.json"
    tmp = out_dir / f".kernels_{dev.type}.json.tmp"
    cmd = [sys.executable, "-m", "pytest", *map(str, BENCH_FILES), f"--device={dev}"]
    cmd += [f"--profile={profile}", f"--seed={seed}", f"--benchmark-json={tmp}"]
    cmd += ["-q", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory(prefix="attnbench-inductor-") as cache:
        env = {COMPILE_CACHE: cache}
        tethered = preexec_die_with_parent()  # pytest dies with this process, SIGKILL too
        run = subprocess.run(cmd, cwd=REPO_ROOT, env=os.environ | env, preexec_fn=tethered)
        rc = run.returncode
        if rc != 0 or not tmp.exists():
            raise RuntimeError(f"kernel benchmarks failed (pytest exit code {rc}): {' '.join(cmd)}")
        os.replace(tmp, json_path)  # a crash never leaves a half-written results file
        rows = measure_memory(memory_cases(prof), prof, dev, seed, env=env)
        returned = memory_cases(prof, prof.returned_ns)
        rows += measure_memory(returned, prof, dev, seed, env=env, returned=True)
    csv_path = out_dir / f"kernel_memory_{dev.type}.csv"
    write_csv(csv_path, rows, CSV_COLUMNS)
    return [json_path, csv_path]
