"""pytest options and fixtures for `benchmarks/timing/bench_attention.py` (pytest-benchmark 5.3).

    pytest benchmarks/timing/bench_attention.py --device cpu|cuda --profile quick|default|full \
        --benchmark-json=results/raw/kernels_cpu.json

Every skipped case is kept, with its reason, in the JSON's `skipped` list, and the machine
description (`devices.environment`) and the profile in `machine_info["attnbench"]`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
import torch

from benchmarks.timing.cases import PROFILES, Profile
from benchmarks.timing.devices import environment, resolve_device
from models.errors import ConfigError

SKIPS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attnbench", "attention benchmarks")
    group.addoption("--device", default="cpu", help="device to time on: cpu | cuda | cuda:N | mps")
    group.addoption("--profile", default="default", choices=list(PROFILES), help="size preset")
    group.addoption("--seed", type=int, default=0, help="seed of every random input")


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[SKIPS] = []
        resolve_device(config.getoption("device"))
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from None


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    device = resolve_device(config.getoption("device"))
    profile = config.getoption("profile")
    machine_info["attnbench"] = {
        **environment(device),
        "profile": profile,
        "profile_sizes": asdict(PROFILES[profile]),
    }


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict):
    output_json["skipped"] = config.stash[SKIPS]


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    return resolve_device(pytestconfig.getoption("device"))


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> Profile:
    return PROFILES[pytestconfig.getoption("profile")]


@pytest.fixture(scope="session")
def seed(pytestconfig: pytest.Config) -> int:
    return pytestconfig.getoption("seed")


@pytest.fixture(scope="session")
def env(device: torch.device) -> dict[str, Any]:
    return environment(device)


@pytest.fixture
def common_info(env: dict[str, Any], seed: int) -> dict[str, Any]:
    """What every record's extra_info carries besides its own case."""
    keys = ("device", "threads", "allocator", "torch", "git_commit")
    return {**{k: env[k] for k in keys}, "seed": seed}


@pytest.fixture
def skip_case(request: pytest.FixtureRequest) -> Any:
    """skip_case(info, reason): record the case and why, then pytest.skip."""

    def skip(info: dict[str, Any], reason: str) -> None:
        request.config.stash[SKIPS].append({"name": request.node.name, **info, "reason": reason})
        pytest.skip(reason)

    return skip
