"""Transformer-decoder specifics: positions, causality switch, KV cache, kernels, max_len.

Shapes: B batch, S memory length, T target length, D d_model, H heads, V vocab.
The generic decoder contract (padding, step == forward, beam == greedy, ...) is in test_decoders.
"""

from __future__ import annotations

import math

import pytest
import torch

import models
import models.transformer  # noqa: F401  (registers `transformer` until models/__init__ does)
from models.base import EncoderOutput
from models.errors import ConfigError
from models.positions import sinusoidal_table
from models.transformer import TransformerDecoder

B, S, T, D, V, H = 2, 5, 6, 16, 23, 4


def make_enc(seed: int = 0, b: int = B, s: int = S, d: int = D) -> EncoderOutput:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, s, dtype=torch.bool)  # (B, S)
    mask[-1, s - 2 :] = False  # one padded row so key padding is exercised
    return EncoderOutput(torch.randn(b, s, d, generator=g), mask, torch.randn(b, d, generator=g))


def make_tokens(seed: int = 1, b: int = B, t: int = T) -> torch.Tensor:
    return torch.randint(4, V, (b, t), generator=torch.Generator().manual_seed(seed))  # (B, T)


def make_dec(**cfg) -> TransformerDecoder:
    torch.manual_seed(0)
    return TransformerDecoder(V, d_model=D, num_heads=H, **cfg).eval()


def test_transformer_permutation_equivariant_without_positions() -> None:
    enc, tok = make_enc(), make_tokens()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        dec = make_dec(positional="none", causal=False)
        out, out_p = dec(enc, tok), dec(enc, tok[:, perm])
        torch.testing.assert_close(out_p.logits, out.logits[:, perm], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_p.attn, out.attn[:, perm], atol=1e-5, rtol=1e-5)
        # The same weights with sinusoidal positions are order-aware: the test can fail.
        dec_pos = make_dec(positional="sinusoidal", causal=False)
        dec_pos.load_state_dict(dec.state_dict())
        moved = dec_pos(enc, tok[:, perm]).logits - dec_pos(enc, tok).logits[:, perm]
        assert moved.abs().max() > 1e-3


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_causal_switch(causal: bool) -> None:
    enc, tok, j = make_enc(), make_tokens(), 3
    changed = tok.clone()
    changed[:, j] = (tok[:, j] - 4 + 1) % (V - 4) + 4  # another non-special token
    with torch.no_grad():
        dec = make_dec(causal=causal)
        before = dec(enc, tok).logits
        after = dec(enc, changed).logits
    leak = (after[:, :j] - before[:, :j]).abs().max().item()
    if causal:
        assert leak < 1e-6, "causal=True: a later token changed earlier logits"
    else:
        assert leak > 1e-4, "causal=False: earlier logits should see later tokens"
    assert (after[:, j:] - before[:, j:]).abs().max() > 1e-4


def test_transformer_sinusoidal_table_matches_formula() -> None:
    max_len, d = 7, 6
    pe = sinusoidal_table(max_len, d)
    for pos in range(max_len):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    dec = make_dec(positional="sinusoidal", max_len=max_len)
    torch.testing.assert_close(dec.pe, sinusoidal_table(max_len, D))
    assert not any("pos" in name for name, _ in dec.named_parameters())


def test_transformer_learned_positions_are_trained() -> None:
    dec = make_dec(positional="learned", max_len=9)
    assert dec.pos_embed.weight.shape == (9, D) and dec.pos_embed.weight.requires_grad
    assert any(p is dec.pos_embed.weight for p in dec.parameters())
    dec(make_enc(), make_tokens()).logits.sum().backward()
    assert dec.pos_embed.weight.grad[:T].abs().sum() > 0  # positions 0..T-1 were used
    assert dec.pos_embed.weight.grad[T:].abs().sum() == 0


def test_transformer_no_positions_has_none() -> None:
    dec = make_dec(positional="none")
    assert dec.pe is None and dec.pos_embed is None
    base = sum(p.numel() for p in dec.parameters())
    learned = sum(p.numel() for p in make_dec(positional="learned", max_len=9).parameters())
    assert learned - base == 9 * D


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_kv_cache_matches_recompute_and_forward(norm_first: bool) -> None:
    enc, tok = make_enc(), make_tokens()
    cached = make_dec(norm_first=norm_first, num_layers=3)
    plain = make_dec(norm_first=norm_first, num_layers=3, use_cache=False)
    plain.load_state_dict(cached.state_dict())
    with torch.no_grad():
        full = cached(enc, tok)
        st_c, st_p = cached.init_state(enc), plain.init_state(enc)
        for k in range(1, T + 1):
            lc, st_c, ac = cached.step(st_c, tok[:, k - 1])
            lp, st_p, ap = plain.step(st_p, tok[:, k - 1])
            assert all(kk.shape == vv.shape == (B, H, k, D // H) for kk, vv in st_c["self"])
            assert torch.equal(st_c["pos"], torch.full((B,), k))
            torch.testing.assert_close(lc, lp, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(lc, full.logits[:, k - 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ac, full.attn[:, k - 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ap, ac, atol=1e-5, rtol=1e-5)


def test_transformer_kv_cache_reorders_with_beam() -> None:
    enc, tok = make_enc(), make_tokens()
    dec = make_dec()
    index = torch.tensor([1, 1, 0])  # beam search duplicates and swaps rows
    with torch.no_grad():
        st = dec.init_state(enc)
        for k in range(3):
            _, st, _ = dec.step(st, tok[:, k])
        st = dec.reorder_state(st, index)
        logits, _, _ = dec.step(st, tok[index, 3])
        full = dec(enc.index_select(index), tok[index, :4]).logits[:, 3]
    torch.testing.assert_close(logits, full, atol=1e-5, rtol=1e-5)


# Small settings so a kernel's own machinery runs at test sizes (chunked: several key blocks).
SMALL_KERNEL_CFG = {"chunked": {"block_size": 2}}


@pytest.mark.parametrize("kernel", models.list_kernels())
def test_transformer_runs_every_kernel(kernel: str) -> None:
    enc, tok = make_enc(), make_tokens()
    ref = make_dec(kernel="sdpa")
    dec = make_dec(kernel=kernel, kernel_cfg=SMALL_KERNEL_CFG.get(kernel))
    with torch.no_grad():
        want = ref(enc, tok)
        if kernel == "additive":  # a different function with its own parameters: shapes only
            assert dec.layers[0].cross_attn.kernel.head_dim == D // H  # passed automatically
            out = dec(enc, tok)
            assert out.logits.shape == (B, T, V) and out.attn.shape == (B, T, S)
            assert torch.isfinite(out.logits).all() and torch.isfinite(out.attn).all()
        else:
            dec.load_state_dict(ref.state_dict())
            out = dec(enc, tok)
            torch.testing.assert_close(out.logits, want.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.attn, want.attn, atol=1e-5, rtol=1e-5)
        st = dec.init_state(enc)  # the cached path (one query over t keys) works with it too
        for k in range(T):
            logits, st, _ = dec.step(st, tok[:, k])
            torch.testing.assert_close(logits, out.logits[:, k], atol=1e-5, rtol=1e-5)


def test_transformer_unscaled_dot_differs() -> None:
    enc, tok = make_enc(), make_tokens()
    scaled = make_dec(kernel="dot")
    unscaled = make_dec(kernel="dot", kernel_cfg={"scaled": False})
    unscaled.load_state_dict(scaled.state_dict())
    assert unscaled.layers[0].self_attn.kernel.scaled is False
    with torch.no_grad():
        gap = (unscaled(enc, tok).logits - scaled(enc, tok).logits).abs().max()
    assert gap > 1e-3


def test_transformer_max_len_exceeded_raises() -> None:
    enc = make_enc()
    dec = make_dec(max_len=4)
    with pytest.raises(ValueError, match="exceeds transformer max_len=4"):
        dec(enc, make_tokens(t=5))
    for use_cache in (True, False):
        dec.use_cache = use_cache
        st = dec.init_state(enc)
        with torch.no_grad():
            for k in range(4):
                _, st, _ = dec.step(st, make_tokens(t=5)[:, k])
            with pytest.raises(ValueError, match="max_len"):
                dec.step(st, make_tokens(t=5)[:, 4])


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"num_heads": 3}, "not divisible"),
        ({"positional": "rotary"}, "positional"),
        ({"kernel": "nope"}, "unknown kernel"),
    ],
)
def test_transformer_bad_config_raises(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TransformerDecoder(V, d_model=D, **{"num_heads": H, **cfg})


def test_transformer_embedding_scaled_by_sqrt_d() -> None:
    dec, tok = make_dec(positional="none"), make_tokens()
    x = dec._embed(tok, torch.arange(T)[None])  # (B, T, D)
    torch.testing.assert_close(x, dec.embed.weight[tok] * math.sqrt(D))
