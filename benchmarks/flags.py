"""Command-line flags checked when a command starts, before any work or any file written.

Each check names the flag and the value in one line (a `ConfigError`, which the CLI prints as
`error: ...`, exit code 2). Checks are keyed by argparse dest (`FLAG_CHECKS`), so a new command
that reuses a flag name (`--device`, `--out`, `--results`, ...) is checked with no other edit.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from models.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse whose errors (a bad int, an unknown flag) are bad input like any other: one line,
    exit code 2, instead of a usage block. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


# ---- checks of flags, by argparse dest, run before any work ------------------------------------


def _device(flag: str, name: str) -> None:
    from benchmarks.timing.devices import resolve_device

    try:
        resolve_device(name)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _at_least_one(flag: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{flag} {value}: must be an integer >= 1")


def _writable_dir(flag: str, path: Path) -> None:
    from benchmarks.harness.config import check_writable_dir

    check_writable_dir(Path(path), flag)


def output_file(flag: str, path: Path) -> None:
    """A file we will write atomically: not a folder, and its folder writable (the temporary
    file is made there), or creatable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file path")
    try:
        _writable_dir("directory", path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{flag} {path}: {exc}") from None


FLAG_CHECKS: dict[str, Callable[[str, Any], None]] = {  # argparse dest -> check(flag, value)
    "device": _device,
    "threads": _at_least_one,
    "workers": _at_least_one,
    "n": _at_least_one,
    "out": output_file,
    "checkpoint_dir": _writable_dir,
    "results": _writable_dir,  # the sweeps' raw/ inside it: check_sweep_flags
}


def check_flags(args: argparse.Namespace) -> None:
    """Every flag of FLAG_CHECKS that the command has and the user (or a default) set: a bad one
    fails here, in one line naming the flag and the value, before any work or any file written."""
    for dest, check in FLAG_CHECKS.items():
        value = getattr(args, dest, None)
        if value is not None:
            check(f"--{dest.replace('_', '-')}", value)


def flag_message(message: str) -> str:
    """A TrainConfig error `eval_every=0: ...` as the flag that set it: `--eval-every=0: ...`."""
    from benchmarks.harness.config import config_fields

    name, sep, rest = message.partition("=")
    return f"--{name.replace('_', '-')}={rest}" if sep and name in config_fields() else message


def check_sweep_flags(args: argparse.Namespace) -> None:
    """The folder the sweeps write into, the profile and the executor choice, before the
    results folder is made."""
    _writable_dir("--results", Path(args.results) / "raw")
    if args.command == "kernels":
        from benchmarks.timing.cases import get_profile
    else:
        from benchmarks.sweeps.executors import get_executor
        from benchmarks.sweeps.profiles import get_profile

        try:
            get_executor(args.executor, args.device, args.workers, args.ray_address)
        except ConfigError as exc:
            raise ConfigError(f"--executor {args.executor}: {exc}") from None
    try:
        get_profile(args.profile)
    except ConfigError as exc:
        raise ConfigError(f"--profile: {exc}") from None
