"""Behaviour specific to the recurrent decoders `rnn` (context vector only) and `rnn_attn`.

The generic contract (causality, padding, step == forward at defaults, beam, gradients, overfit)
lives in tests/models/test_decoders.py; here: what only these two promise, over every cell and
alignment.
Shapes: B batch, S memory length, T target length, D width, V vocab.
"""

from __future__ import annotations

import pytest
import torch

from models.alignment import ALIGNMENTS
from models.base import EncoderOutput
from models.rnn import CELLS, RNNDecoder
from models.rnn_attn import AttnRNNDecoder

V, D, B, S, T = 11, 8, 3, 5, 4


@pytest.fixture(autouse=True)
def _seeded():
    """Deterministic init and data without leaking the global RNG into other tests."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def make_enc(b: int = B, s: int = S, d: int = D, lengths: list[int] | None = None) -> EncoderOutput:
    lengths = lengths if lengths is not None else [s - i % s for i in range(b)]
    mask = torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    return EncoderOutput(torch.randn(b, s, d), mask, torch.randn(b, d))


def make_tokens(b: int = B, t: int = T) -> torch.Tensor:
    return torch.randint(1, V, (b, t))  # (B, T)


def step_all(dec: torch.nn.Module, enc: EncoderOutput, tokens: torch.Tensor):
    """Run `step` over tokens -> logits (B, T, V), attn (B, T, S) | None."""
    state, logits, attns = dec.init_state(enc), [], []
    for t in range(tokens.shape[1]):
        lg, state, w = dec.step(state, tokens[:, t])
        logits.append(lg)
        attns.append(w)
    attn = None if attns[0] is None else torch.stack(attns, 1)
    return torch.stack(logits, 1), attn


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_ignores_memory_beyond_summary(cell: str) -> None:
    dec = RNNDecoder(V, D, cell=cell).eval()
    enc, tokens = make_enc(), make_tokens()
    other = make_enc(s=S + 2, lengths=[1, 3, 7])  # different memory, length and mask
    other.summary = enc.summary.clone()
    out_a, out_b = dec(enc, tokens), dec(other, tokens)
    assert out_a.attn is None and out_b.attn is None
    torch.testing.assert_close(out_a.logits, out_b.logits, rtol=0, atol=0)
    torch.testing.assert_close(step_all(dec, other, tokens)[0], out_a.logits, rtol=0, atol=1e-5)
    other.summary = other.summary + 1.0  # ...and the summary does matter
    assert not torch.allclose(dec(other, tokens).logits, out_a.logits)


def test_rnn_tanh_cell_matches_cs231n_formula() -> None:
    dec = RNNDecoder(V, D, cell="rnn").eval()
    enc, tokens = make_enc(), make_tokens(t=5)
    wx, wh = dec.rnn.weight_ih_l0.T, dec.rnn.weight_hh_l0.T  # (D, D) each, cs231n's Wx, Wh
    bias = dec.rnn.bias_ih_l0 + dec.rnn.bias_hh_l0  # (D,)
    h = enc.summary @ dec.init.h.weight.T + dec.init.h.bias  # (B, D), h0 = features W_proj + b
    expected = []
    with torch.no_grad():
        for t in range(tokens.shape[1]):
            x = dec.embed.weight[tokens[:, t]]  # (B, D)
            h = torch.tanh(x @ wx + h @ wh + bias)  # cs231n rnn_step_forward
            expected.append(h @ dec.out.weight.T + dec.out.bias)  # (B, V)
        got = dec(enc, tokens).logits
    torch.testing.assert_close(got, torch.stack(expected, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_step_matches_forward_every_cell(cell: str, num_layers: int) -> None:
    dec = RNNDecoder(V, D, dropout=0.3, cell=cell, num_layers=num_layers).eval()
    enc, tokens = make_enc(), make_tokens()
    with torch.no_grad():
        torch.testing.assert_close(
            step_all(dec, enc, tokens)[0], dec(enc, tokens).logits, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_attn_step_matches_forward(cell: str, alignment: str) -> None:
    dec = AttnRNNDecoder(V, D, dropout=0.3, cell=cell, alignment=alignment).eval()
    enc, tokens = make_enc(), make_tokens()
    with torch.no_grad():
        out = dec(enc, tokens)
        logits, attn = step_all(dec, enc, tokens)
    torch.testing.assert_close(logits, out.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn, out.attn, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_rnn_attn_weights_normalised_and_zero_on_padding(alignment: str) -> None:
    dec = AttnRNNDecoder(V, D, alignment=alignment).eval()
    enc, tokens = make_enc(lengths=[5, 2, 1]), make_tokens()
    with torch.no_grad():
        attn = dec(enc, tokens).attn
        _, step_attn = step_all(dec, enc, tokens)
    assert attn.shape == (B, T, S)
    for w in (attn, step_attn):
        torch.testing.assert_close(w.sum(-1), torch.ones(B, T), rtol=0, atol=1e-6)
        assert bool((w.masked_select(~enc.memory_mask[:, None, :]) == 0).all())
        assert bool((w.masked_select(enc.memory_mask[:, None, :]) > 0).all())
    assert bool((attn[2, :, 0] == 1).all())  # a single valid position takes all the weight


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_rnn_attn_key_projection_once_per_sequence(alignment: str) -> None:
    dec = AttnRNNDecoder(V, D, alignment=alignment).eval()
    calls = {"precompute": 0, "proj": 0}
    precompute = dec.alignment.precompute

    def counted(memory: torch.Tensor) -> torch.Tensor:
        calls["precompute"] += 1
        return precompute(memory)

    dec.alignment.precompute = counted
    proj = getattr(dec.alignment, "key_proj", None)  # dot/scaled_dot have no projection
    if proj is not None:
        proj.register_forward_hook(lambda *_: calls.__setitem__("proj", calls["proj"] + 1))
    expected_proj = 1 if proj is not None else 0
    enc, tokens = make_enc(), make_tokens(t=6)
    with torch.no_grad():
        dec(enc, tokens)
        assert calls == {"precompute": 1, "proj": expected_proj}
        state = dec.init_state(enc)
        assert calls == {"precompute": 2, "proj": 2 * expected_proj}
        for t in range(tokens.shape[1]):
            _, state, _ = dec.step(state, tokens[:, t])
    assert calls == {"precompute": 2, "proj": 2 * expected_proj}  # zero per step


@pytest.mark.parametrize("decoder_cls", [RNNDecoder, AttnRNNDecoder])
def test_rnn_decoders_reject_fully_masked_row(decoder_cls: type) -> None:
    dec = decoder_cls(V, D)
    enc = make_enc(lengths=[S, 0, 2])
    with pytest.raises(ValueError, match=r"no valid position in batch row\(s\) \[1\]"):
        dec(enc, make_tokens())
    with pytest.raises(ValueError, match=r"no valid position in batch row\(s\) \[1\]"):
        dec.init_state(enc)


@pytest.mark.parametrize(
    ("decoder_cls", "options", "message"),
    [
        (RNNDecoder, {"cell": "lstmm"}, "unknown cell 'lstmm'"),
        (RNNDecoder, {"num_layers": 0}, "num_layers must be >= 1"),
        (AttnRNNDecoder, {"alignment": "bilinear"}, "unknown alignment 'bilinear'"),
        (AttnRNNDecoder, {"alignment": "dot", "attn_dim": 4}, "only applies to alignment"),
    ],
)
def test_rnn_decoders_reject_bad_options(decoder_cls: type, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decoder_cls(V, D, **options)


def train_losses(dec: torch.nn.Module, steps: int = 8) -> list[float]:
    """A few Adam steps on one fixed batch -> the loss before each step."""
    enc, tokens = make_enc(), make_tokens(t=T + 1)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T) each
    opt = torch.optim.Adam(dec.parameters(), lr=3e-2)
    losses = []
    for _ in range(steps):
        logits = dec(enc, inputs).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_trains_every_cell(cell: str) -> None:
    losses = train_losses(RNNDecoder(V, D, cell=cell, num_layers=2))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_attn_trains_every_cell_and_alignment(cell: str, alignment: str) -> None:
    dec = AttnRNNDecoder(V, D, cell=cell, alignment=alignment)
    losses = train_losses(dec)
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for p in dec.alignment.parameters())  # the scorer learns too
