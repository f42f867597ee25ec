"""Device plumbing for the benchmarks: pick a device, synchronise it, read its peak memory, and
describe the machine a timing came from.

One `synchronize(device)` serves every timing: a no-op on CPU (where kernels return finished), a
real barrier on CUDA/MPS (where a call returns at launch, so an unsynchronised timer measures the
launch). Peak memory is the allocator's high-water mark on CUDA and the resident-set high-water
mark (VmHWM) on Linux CPUs; neither is estimated here.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

import torch

from models.errors import ConfigError

DEVICES = ("cpu", "cuda", "mps", "auto")
ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")  # what LD_PRELOAD may swap in for glibc malloc
REPO_ROOT = Path(__file__).resolve().parents[2]


def _available(name: str) -> bool:
    if name == "cpu":
        return True
    if name == "cuda":
        return torch.cuda.is_available()
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' | 'mps' | 'auto' (cuda, then mps, then cpu) -> torch.device."""
    kind, sep, index = name.partition(":")
    if kind not in DEVICES or (sep and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown device '{name}'; choose from {list(DEVICES)} or cuda:N")
    if kind == "auto":
        kind = next(d for d in ("cuda", "mps", "cpu") if _available(d))
    if not _available(kind):
        raise ConfigError(f"device '{name}' is not available here (torch {torch.__version__})")
    if sep and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}': this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(name if sep else kind)


def device_name(name: str) -> str:
    """The concrete device `name` stands for ('auto' -> 'cuda', 'mps' or 'cpu'), resolved once in
    the driver, so that every worker, Ray's GPU request and every file name agree on it."""
    return str(resolve_device(name))


def device_tag(name: str) -> str:
    """The device type that names result files: quality_cuda.csv for 'cuda' and 'cuda:1' alike."""
    return resolve_device(name).type


def synchronize(device: torch.device) -> None:
    """Wait for queued work on `device`; CPU work is synchronous, so there it does nothing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _proc_status_kb(key: str) -> int | None:
    """A `kB` field of /proc/self/status (Linux), e.g. VmRSS or VmHWM."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_memory(device: torch.device) -> int | None:
    """Bytes in use now: CUDA tensors allocated, or the CPU process's resident set."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb * 1024


def peak_memory_reset(device: torch.device) -> None:
    """Restart the high-water mark (CUDA allocator stats; on Linux CPUs, VmHWM via clear_refs)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif device.type == "cpu":
        try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0, see proc(5))
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # peak_memory_read then falls back to the peak since the process started


def peak_memory_read(device: torch.device) -> int | None:
    """Peak bytes since the last reset: CUDA max_memory_allocated, CPU VmHWM (or ru_maxrss)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if device.type != "cpu":
        return None
    kb = _proc_status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss if platform.system() == "Darwin" else rss * 1024
    return kb * 1024


def _meminfo_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_capacity(device: torch.device) -> int:
    """Total bytes of the memory the device computes in (host RAM or GPU memory)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = _meminfo_bytes("MemTotal")
    return total if total is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_available(device: torch.device) -> int:
    """Bytes that can be allocated now without evicting others (MemAvailable, CUDA free)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    avail = _meminfo_bytes("MemAvailable")
    return avail if avail is not None else memory_capacity(device)


def allocator() -> str:
    """Host malloc in use: a preloaded tcmalloc/jemalloc/mimalloc, else the system's ('glibc')."""
    preload = os.environ.get("LD_PRELOAD", "")
    found = [name for name in ALLOCATORS if name in preload]
    if found:
        return found[0]
    return "glibc" if platform.system() == "Linux" else "system"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """HEAD's hash ('-dirty' when the tree has changes), or None outside a repo with commits."""
    try:
        run = dict(cwd=root, capture_output=True, text=True, timeout=10, check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, Any]:
    """What a timing depends on, with no hostname: software, threads, CPU/GPU, allocator, commit."""
    env: dict[str, Any] = {
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "ram_gb": round(memory_capacity(torch.device("cpu")) / 2**30, 1),
        "allocator": allocator(),
        "gpu": None,
        "git_commit": git_commit(),
        "load_1m": round(os.getloadavg()[0], 2),  # other processes' share of these cores
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_mem_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cuda_alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        )
    return env
