"""Name -> factory registries for decoders, encoders and attention kernels (timm-style).

`create_*(name, **cfg)` fails fast on an unknown name or an unknown config key and lists the
choices, so a typo in a sweep config is an error at start-up, not a silently default run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

_REGISTRIES: dict[str, dict[str, Callable[..., Any]]] = {"decoder": {}, "encoder": {}, "kernel": {}}


def _register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        table = _REGISTRIES[kind]
        if name in table and table[name] is not factory:
            raise ValueError(f"{kind} '{name}' is already registered by {table[name]!r}")
        table[name] = factory
        return factory

    return wrap


def accepted_keys(factory: Callable[..., Any]) -> list[str]:
    """Keyword arguments a factory (class or function) accepts."""
    params = inspect.signature(factory).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL]


def _create(kind: str, name: str, cfg: dict[str, Any]) -> Any:
    table = _REGISTRIES[kind]
    if name not in table:
        raise ConfigError(f"unknown {kind} '{name}'; choose from {sorted(table)}")
    factory = table[name]
    keys = accepted_keys(factory)
    unknown = sorted(set(cfg) - set(keys))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {kind} '{name}'; accepted: {keys}")
    return factory(**cfg)


def register_decoder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _register("decoder", name)


def register_encoder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _register("encoder", name)


def register_kernel(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _register("kernel", name)


def create_decoder(name: str, **cfg: Any) -> Any:
    return _create("decoder", name, cfg)


def create_encoder(name: str, **cfg: Any) -> Any:
    return _create("encoder", name, cfg)


def create_kernel(name: str, **cfg: Any) -> Any:
    return _create("kernel", name, cfg)


def list_decoders() -> list[str]:
    return sorted(_REGISTRIES["decoder"])


def list_encoders() -> list[str]:
    return sorted(_REGISTRIES["encoder"])


def list_kernels() -> list[str]:
    return sorted(_REGISTRIES["kernel"])


def unregister(kind: str, name: str) -> None:
    """Remove `name` (a plugin unloaded, a test's toy decoder); unknown names are ignored."""
    _REGISTRIES[kind].pop(name, None)


def registered(kind: str, name: str) -> Callable[..., Any] | None:
    """The factory registered as `name` of `kind` ("decoder", "encoder", "kernel"), or None."""
    return _REGISTRIES[kind].get(name)


def decoder_class(name: str) -> Callable[..., Any]:
    if name not in _REGISTRIES["decoder"]:
        raise ConfigError(f"unknown decoder '{name}'; choose from {list_decoders()}")
    return _REGISTRIES["decoder"][name]


def kernel_class(name: str) -> Callable[..., Any]:
    """The registered kernel class: its cost model (flops, peak_bytes, color), no instance."""
    if name not in _REGISTRIES["kernel"]:
        raise ConfigError(f"unknown kernel '{name}'; choose from {list_kernels()}")
    return _REGISTRIES["kernel"][name]
