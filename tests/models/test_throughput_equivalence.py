"""The throughput rewrite changes no number: the fused rnn_attn recurrence and the Transformer's
fused projections equal the round-1 math (tests/models/reference_decoders.py) within 1e-5,
outputs and every parameter's gradient; the hand-written backward passes gradcheck.

Shapes: B batch, S memory length, T target length, D width, V vocab, A alignment width.
"""

from __future__ import annotations

import pytest
import torch

from models.alignment import ALIGNMENTS
from models.attn_gru import AttentiveGRUScan, Workspace
from models.base import EncoderOutput
from models.rnn import CELLS
from models.rnn_attn import AttnRNNDecoder
from models.transformer import TransformerDecoder
from tests.models.reference_decoders import rnn_attn_reference, transformer_reference

B, S, T, D, V = 3, 6, 5, 16, 11
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _seeded():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def make_enc(dtype: torch.dtype = torch.float32, d: int = D) -> EncoderOutput:
    mask = torch.arange(S)[None, :] < torch.tensor([S, S - 2, 1])[:, None]  # (B, S) padded rows
    memory = torch.randn(B, S, d, dtype=dtype) * mask[..., None]
    return EncoderOutput(memory, mask, torch.randn(B, d, dtype=dtype))


def grads(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same_run(dec: torch.nn.Module, new_fn, old_fn, weights: torch.Tensor) -> None:
    """Outputs and every parameter gradient of a weighted sum of the logits agree."""
    new, old = new_fn(), old_fn()
    torch.testing.assert_close(new, old, **TOL)
    g_new, g_old = grads(dec, (new_fn() * weights).sum()), grads(dec, (old_fn() * weights).sum())
    assert g_new.keys() == g_old.keys()
    for name in g_new:
        torch.testing.assert_close(g_new[name], g_old[name], **TOL, msg=name)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_attn_fast_path_equals_round1_math(cell: str, alignment: str) -> None:
    dec = AttnRNNDecoder(V, D, cell=cell, alignment=alignment)
    enc, tokens = make_enc(), torch.randint(1, V, (B, T))
    weights = torch.randn(B, T, V)
    assert_same_run(
        dec,
        lambda: dec(enc, tokens).logits,
        lambda: rnn_attn_reference(dec, enc, tokens)[0],
        weights,
    )
    torch.testing.assert_close(dec(enc, tokens).attn, rnn_attn_reference(dec, enc, tokens)[1])


@pytest.mark.parametrize("alignment", ["additive", "scaled_dot"])
def test_attentive_gru_scan_gradcheck(alignment: str) -> None:
    """Hand-written backward vs finite differences in float64: every input, every output."""
    a = 4
    additive = alignment == "additive"
    enc = make_enc(torch.float64, d=3)
    g, d = 9, 3
    leaf = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    xg, h0, w_hh, b_hh, w_ic = leaf(B, T, g), leaf(B, d), leaf(g, d), leaf(g), leaf(g, d)
    keys = leaf(B, S, a if additive else d)
    memory = enc.memory.clone().requires_grad_(True)
    w_q, v = (leaf(a, d), leaf(a)) if additive else (None, None)

    def run(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xg, keys, memory, h0, w_hh, b_hh, w_ic, *rest = args
        wq, vv = rest if additive else (None, None)
        return AttentiveGRUScan.apply(
            xg, keys, memory, enc.memory_mask, h0, wq, vv, w_hh, b_hh, w_ic, 0.7, Workspace()
        )

    inputs = [xg, keys, memory, h0, w_hh, b_hh, w_ic] + ([w_q, v] if additive else [])
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-6)


def test_workspace_is_never_shared_by_two_live_graphs() -> None:
    """Two forwards before their backwards: the second must not overwrite the first's tanh."""
    dec = AttnRNNDecoder(V, D)
    enc, t1, t2 = make_enc(), torch.randint(1, V, (B, T)), torch.randint(1, V, (B, T))
    first, second = dec(enc, t1).logits.sum(), dec(enc, t2).logits.sum()
    g_first = torch.autograd.grad(first, dec.alignment.v.weight)[0]
    torch.autograd.grad(second, dec.alignment.v.weight)
    alone = torch.autograd.grad(dec(enc, t1).logits.sum(), dec.alignment.v.weight)[0]
    torch.testing.assert_close(g_first, alone)


def test_transformer_fused_projections_equal_paper_math() -> None:
    dec = TransformerDecoder(V, d_model=D, num_heads=4, kernel="dot")
    enc, tokens = make_enc(), torch.randint(1, V, (B, T))
    weights = torch.randn(B, T, V)
    assert_same_run(
        dec,
        lambda: dec(enc, tokens, need_attn=False).logits,
        lambda: transformer_reference(dec, enc, tokens),
        weights,
    )


def test_transformer_forms_attention_weights_only_on_request() -> None:
    dec = TransformerDecoder(V, d_model=D, num_heads=4)
    enc, tokens = make_enc(), torch.randint(1, V, (B, T))
    assert dec(enc, tokens, need_attn=False).attn is None
    assert dec(enc, tokens).attn.shape == (B, T, S)


def test_transformer_backward_copies_no_ffn_sized_buffer() -> None:
    """The FFN runs on (B*T, D) rows: on (B, T, D) the in-place ReLU wrote into a view and
    autograd copied and cloned (B, T, F) buffers in backward (a third of the FFN's time)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ffn_numel = B * T * 4 * D  # (B, T, F), F = 4D
    copies = (torch.ops.aten.copy_.default, torch.ops.aten.clone.default)
    seen: list[tuple[int, ...]] = []

    class CopyLog(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            source = args[1] if func is copies[0] else args[0]  # copy_(self, src) | clone(x)
            if func in copies and source.numel() >= ffn_numel:
                seen.append(tuple(source.shape))
            return func(*args, **(kwargs or {}))

    dec = TransformerDecoder(V, d_model=D, num_heads=4)
    enc, tokens = make_enc(), torch.randint(1, V, (B, T))
    loss = dec(enc, tokens, need_attn=False).logits.square().sum()
    with CopyLog():
        loss.backward()
    assert seen == []


def test_retained_graph_recomputes_after_the_workspace_was_reused() -> None:
    """backward, another forward (which takes the buffer), backward again on the first graph."""
    dec = AttnRNNDecoder(V, D)
    enc, t1, t2 = make_enc(), torch.randint(1, V, (B, T)), torch.randint(1, V, (B, T))
    loss = dec(enc, t1).logits.sum()
    w = dec.alignment.v.weight
    g1 = torch.autograd.grad(loss, w, retain_graph=True)[0]
    dec(enc, t2).logits.sum().backward()  # a forward that reuses the shared buffer
    torch.testing.assert_close(torch.autograd.grad(loss, w)[0], g1)
