"""Attention kernels vs float64 references: outputs, gradients, saved memory, weights, registry.

Shapes: B batch, H heads, T queries, S keys, Dh head width. Kernels run in fp32 and are compared
with a float64 reference by relative error ||out - ref|| / ||ref|| (flash-attention's test style).
Every kernel test is parametrized over `models.list_kernels()`, so a newly registered kernel is
checked automatically: against scaled-dot attention unless `reference` learns its formula.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import models
from models.attention import AdditiveAttention, DotAttention
from models.errors import ConfigError
from models.registry import accepted_keys, kernel_class

B, H, DH = 2, 2, 8
TOL = 1e-5
KERNELS = models.list_kernels()
# Small non-default configs: chunked with (query, key) tiles of 2 x 3, so every test crosses
# several tiles, rectangular ones and ragged last ones; additive with A != Dh to catch a
# transpose and 2-query blocks. flex needs none (its test shapes are few: each one compiles).
CONFIGS: dict[str, dict] = {
    "chunked": {"block_size": (2, 3)},
    "additive": {"head_dim": DH, "attn_dim": 6, "block_size": 2},
}
# (T, S, mask kind, causal); every query row keeps >= 1 valid key.
CASES = [
    (5, 7, "none", False),
    (5, 7, "pad", False),
    (5, 7, "none", True),
    (5, 7, "pad", True),
    (7, 5, "pad", True),  # T > S: late queries see every key
    (4, 10, "random", True),  # a per-query (B,1,T,S) mask, not just key padding
    (4, 10, "left", False),  # left padding: whole leading key blocks masked for row 1
    (6, 1, "none", False),  # S = 1: the softmax is exactly 1
]
CASE_IDS = [f"T{t}-S{s}-{m}-{'causal' if c else 'full'}" for t, s, m, c in CASES]


def make_kernel(name: str, **cfg: object) -> torch.nn.Module:
    """A kernel with deterministic parameters, without touching the global RNG of other tests;
    skips the test where the kernel cannot run on this platform (flex without a compiler)."""
    reason = kernel_class(name).unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel '{name}' is unavailable here: {reason}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return models.create_kernel(name, **{**CONFIGS.get(name, {}), **cfg})


def make_inputs(t: int, s: int, mask_kind: str, seed: int = 0) -> tuple[Tensor, ...]:
    """q (B,H,T,Dh), k, v (B,H,S,Dh) fp32 and a bool mask or None."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, t, DH, generator=g)
    k = torch.randn(B, H, s, DH, generator=g)
    v = torch.randn(B, H, s, DH, generator=g)
    mask = None
    if mask_kind == "pad":
        lengths = torch.tensor([s, max(1, s - 3)])  # (B,) row 1 padded at the end
        mask = (torch.arange(s) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    elif mask_kind == "left":
        mask = (torch.arange(s) >= torch.tensor([0, s - 3])[:, None])[:, None, None, :]  # (B,1,1,S)
    elif mask_kind == "random":
        mask = torch.rand(B, 1, t, s, generator=g) < 0.5  # (B, 1, T, S)
        mask[..., 0] = True  # key 0 keeps every row valid, causal row 0 included
    return q, k, v, mask


def attend_mask(mask: Tensor | None, causal: bool, t: int, s: int) -> Tensor:
    """(B, H, T, S) bool, built independently of the library's helpers."""
    attend = torch.ones(B, H, t, s, dtype=torch.bool)
    if mask is not None:
        attend = attend & mask
    if causal:
        attend = attend & (torch.arange(s)[None, :] <= torch.arange(t)[:, None])  # top-left
    return attend


def reference(
    kernel: torch.nn.Module,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    params: list[Tensor] | None = None,
) -> Tensor:
    """The kernel's formula in float64; `params` (in `kernel.parameters()` order) default to the
    kernel's own, cast to float64."""
    if params is None:
        params = [p.detach().double() for p in kernel.parameters()]
    if isinstance(kernel, AdditiveAttention):
        wq, wk, w = params  # W_q (A, Dh), W_k (A, Dh), w (1, A)
        hidden = (q @ wq.T).unsqueeze(-2) + (k @ wk.T).unsqueeze(-3)  # (B, H, T, S, A)
        scores = (torch.tanh(hidden) @ w.T).squeeze(-1)  # (B, H, T, S)
    else:
        scaled = getattr(kernel, "scaled", True)
        scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scaled else 1.0)
    attend = attend_mask(mask, causal, q.shape[-2], k.shape[-2])
    weights = scores.masked_fill(~attend, float("-inf")).softmax(dim=-1)  # (B, H, T, S)
    return weights @ v


def rel_err(x: Tensor, ref: Tensor) -> float:
    return ((x.double() - ref).norm() / ref.norm()).item()


def check_forward(kernel: torch.nn.Module, t: int, s: int, mask_kind: str, causal: bool) -> None:
    q, k, v, mask = make_inputs(t, s, mask_kind)
    out, weights = kernel(q, k, v, mask=mask, causal=causal)
    ref = reference(kernel, q.double(), k.double(), v.double(), mask, causal)
    assert out.shape == (B, H, t, DH) and out.dtype == torch.float32
    assert weights is None  # never computed unless asked
    assert rel_err(out, ref) < TOL


def check_grads(kernel: torch.nn.Module, t: int, s: int, mask_kind: str, causal: bool) -> None:
    q, k, v, mask = make_inputs(t, s, mask_kind)
    dout = torch.randn(B, H, t, DH, generator=torch.Generator().manual_seed(1))
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out, _ = kernel(*leaves, mask=mask, causal=causal)
    params = list(kernel.parameters())
    grads = torch.autograd.grad(out, leaves + params, dout)
    refs64 = [x.double().requires_grad_() for x in (q, k, v)]
    params64 = [p.detach().double().requires_grad_() for p in params]
    ref = reference(kernel, *refs64, mask, causal, params=params64)
    ref_grads = torch.autograd.grad(ref, refs64 + params64, dout.double())
    # fp32 gradients carry a few more roundings than the output (one more matmul chain), but on
    # these O(1) inputs they stay inside the same 1e-5 relative bound; no looser tolerance needed.
    names = ["q", "k", "v"] + [n for n, _ in kernel.named_parameters()]
    for name, g, rg in zip(names, grads, ref_grads, strict=True):
        if rg.norm() == 0:  # S = 1: dq, dk are exactly 0; fp32 leaves rounding noise
            assert (g.double() - rg).norm() < TOL * dout.norm(), name
        else:
            assert rel_err(g, rg) < TOL, name


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize(("t", "s", "mask_kind", "causal"), CASES, ids=CASE_IDS)
def test_kernel_matches_float64_reference(
    name: str, t: int, s: int, mask_kind: str, causal: bool
) -> None:
    check_forward(make_kernel(name), t, s, mask_kind, causal)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize(("t", "s", "mask_kind", "causal"), CASES, ids=CASE_IDS)
def test_kernel_grads_match_float64_reference(
    name: str, t: int, s: int, mask_kind: str, causal: bool
) -> None:
    check_grads(make_kernel(name), t, s, mask_kind, causal)


@pytest.mark.parametrize("block_size", [1, 2, 4, 5, 16, (1, 4), (4, 1), (3, 16), (16, 2)])
@pytest.mark.parametrize("causal", [False, True])
def test_chunked_any_block_size_matches_reference(block_size: int, causal: bool) -> None:
    kernel = make_kernel("chunked", block_size=block_size)  # S = 11: no block divides it but 1
    check_forward(kernel, 6, 11, "pad", causal)
    check_grads(kernel, 6, 11, "pad", causal)


def saved_bytes(kernel: torch.nn.Module, t: int, s: int, dh: int = 16) -> int:
    """Bytes autograd keeps for backward after one forward (distinct tensors counted once)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, n, dh, generator=g, requires_grad=True) for n in (t, s, s))
    seen: dict[tuple, int] = {}

    def pack(x: Tensor) -> Tensor:
        seen[(x.data_ptr(), x.numel(), x.dtype)] = x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        kernel(q, k, v)
    return sum(seen.values())


def test_chunked_saves_no_t_by_s_tensor() -> None:
    t = s = 1024
    matrix = t * s * 4  # one (T, S) fp32 matrix: 4 MiB
    chunked = saved_bytes(make_kernel("chunked", block_size=256), t, s)
    dot = saved_bytes(make_kernel("dot"), t, s)
    assert chunked >= 4 * t * 16 * 4  # the hooks do see q, k, v, out: the bound is not vacuous
    assert chunked < matrix / 8
    assert dot > matrix  # the explicit kernel keeps its weights: the test can tell them apart


def test_dot_unscaled_matches_unscaled_reference() -> None:
    q, k, v, mask = make_inputs(5, 7, "pad")
    out, _ = make_kernel("dot", scaled=False)(q, k, v, mask=mask)
    q64, k64, v64 = q.double(), k.double(), v.double()
    assert rel_err(out, reference(DotAttention(scaled=False), q64, k64, v64, mask, False)) < TOL
    assert rel_err(out, reference(DotAttention(), q64, k64, v64, mask, False)) > 1e-2


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("mask_kind", ["pad", "random"])
def test_kernel_weights_are_a_distribution_over_attended_keys(name: str, mask_kind: str) -> None:
    q, k, v, mask = make_inputs(5, 7, mask_kind)
    out, weights = make_kernel(name)(q, k, v, mask=mask, causal=True, need_weights=True)
    attend = attend_mask(mask, True, 5, 7)  # (B, H, T, S)
    assert weights.shape == (B, H, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, 5), rtol=0, atol=1e-5)
    assert (weights[~attend] == 0).all()
    torch.testing.assert_close(weights @ v, out, rtol=1e-5, atol=1e-5)


def test_chunked_rejects_bad_block_size() -> None:
    with pytest.raises(ValueError, match="block_size"):
        models.create_kernel("chunked", block_size=0)


def test_additive_rejects_wrong_head_dim() -> None:
    q, k, v, _ = make_inputs(3, 4, "none")
    with pytest.raises(ValueError, match="head_dim=4"):
        models.create_kernel("additive", head_dim=4)(q, k, v)


def test_registry_unknown_kernel_lists_choices() -> None:
    with pytest.raises(ConfigError, match="unknown kernel 'flashy'") as err:
        models.create_kernel("flashy")
    assert all(name in str(err.value) for name in KERNELS)


@pytest.mark.parametrize("name", KERNELS)
def test_registry_unknown_config_key_lists_accepted(name: str) -> None:
    with pytest.raises(ConfigError, match="bogus") as err:
        models.create_kernel(name, bogus=1)
    keys = accepted_keys(type(models.create_kernel(name, **CONFIGS.get(name, {}))))
    assert f"accepted: {keys}" in str(err.value)
