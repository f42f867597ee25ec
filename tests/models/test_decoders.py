"""The decoder contract, checked for every registered decoder (and a few variants).

A decoder added with @register_decoder is tested here automatically.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import create_decoder, list_decoders
from models.base import BOS, EOS, PAD, EncoderOutput
from models.seq2seq import beam_search, greedy
from tests.conftest import D_MODEL, VOCAB, random_encoder_output

VARIANTS = {
    "rnn": [{"cell": "rnn"}, {"cell": "gru"}],
    "rnn_attn": [{"alignment": "dot"}, {"cell": "gru", "alignment": "general"}],
    "transformer": [{"norm_first": False}, {"kernel": "chunked"}, {"positional": "learned"}],
}
CASES = [(name, {}) for name in list_decoders()] + [
    (name, cfg) for name in list_decoders() for cfg in VARIANTS.get(name, [])
]
IDS = [name + "".join(f"-{v}" for v in cfg.values()) for name, cfg in CASES]


def make(name: str, cfg: dict) -> torch.nn.Module:
    return create_decoder(name, vocab_size=VOCAB, d_model=D_MODEL, **cfg).eval()


def tokens(b: int = 3, t: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, VOCAB, (b, t), generator=g)
    x[:, 0] = BOS
    return x


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_decoder_forward_shapes(name, cfg):
    dec, enc = make(name, cfg), random_encoder_output()
    out = dec(enc, tokens())
    assert out.logits.shape == (3, 6, VOCAB)
    if out.attn is not None:
        assert out.attn.shape == (3, 6, 5)
        assert torch.allclose(out.attn.sum(-1), torch.ones(3, 6), atol=1e-5)


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_decoder_causality(name, cfg):
    dec, enc, x = make(name, cfg), random_encoder_output(), tokens()
    j = 3
    y = x.clone()
    y[:, j] = (x[:, j] - 3) % (VOCAB - 4) + 4  # a different real token at position j
    a, b = dec(enc, x).logits, dec(enc, y).logits
    torch.testing.assert_close(a[:, :j], b[:, :j], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[:, j:], b[:, j:])


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_decoder_padding_invariance(name, cfg):
    dec, enc, x = make(name, cfg), random_encoder_output(), tokens()
    extra = torch.randn(3, 4, D_MODEL) * 10  # garbage that the mask must hide
    padded = EncoderOutput(
        torch.cat([enc.memory, extra], 1),
        torch.cat([enc.memory_mask, torch.zeros(3, 4, dtype=torch.bool)], 1),
        enc.summary,
    )
    a, b = dec(enc, x), dec(padded, x)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    if a.attn is not None:
        torch.testing.assert_close(a.attn, b.attn[..., :5], rtol=1e-5, atol=1e-6)
        assert float(b.attn[..., 5:].detach().abs().max()) == 0.0


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_decoder_step_reproduces_forward(name, cfg):
    dec, enc, x = make(name, cfg), random_encoder_output(), tokens()
    full = dec(enc, x)
    state = dec.init_state(enc)
    for t in range(x.shape[1]):
        logits, state, attn = dec.step(state, x[:, t])
        torch.testing.assert_close(logits, full.logits[:, t], rtol=1e-5, atol=1e-5)
        if full.attn is not None:
            torch.testing.assert_close(attn, full.attn[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_decoder_reorder_state(name, cfg):
    """Stepping, then reordering the batch, equals stepping a reordered batch from the start."""
    dec, enc, x = make(name, cfg), random_encoder_output(), tokens()
    perm = torch.tensor([2, 0, 2])  # a permutation with a repeat, as beam search makes
    state = dec.init_state(enc)
    for t in range(3):
        _, state, _ = dec.step(state, x[:, t])
    state = dec.reorder_state(state, perm)
    ref_state = dec.init_state(enc.index_select(perm))
    for t in range(3):
        _, ref_state, _ = dec.step(ref_state, x[perm, t])
    a, _, _ = dec.step(state, x[perm, 3])
    b, _, _ = dec.step(ref_state, x[perm, 3])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_decoders())
def test_decoder_beam1_equals_greedy(name):
    dec, enc = make(name, {}), random_encoder_output()
    g, _ = greedy(dec, enc, max_len=7)
    b = beam_search(dec, enc, max_len=7, beam_size=1)
    assert torch.equal(g, b)


@pytest.mark.parametrize("name", list_decoders())
def test_decoder_beam_without_eos_returns_max_length(name, monkeypatch):
    dec, enc = make(name, {}), random_encoder_output()
    step = dec.step

    def never_eos(state, token):
        logits, state, attn = step(state, token)
        # PAD banned too: a PAD in the output can then only mean a beam was wrongly finished
        return logits.index_fill(-1, torch.tensor([EOS, PAD]), float("-inf")), state, attn

    monkeypatch.setattr(dec, "step", never_eos)
    out = beam_search(dec, enc, max_len=9, beam_size=3)
    assert out.shape == (3, 9)
    assert not bool((out == EOS).any()) and not bool((out == PAD).any())


@pytest.mark.parametrize("name", list_decoders())
def test_decoder_beam_ranks_by_normalised_score(name):
    """A wider beam never returns a hypothesis with a worse normalised log-prob than beam 1."""
    dec, enc = make(name, {}), random_encoder_output(b=2)

    def score(seq: torch.Tensor) -> torch.Tensor:
        x = torch.cat([torch.full((2, 1), BOS), seq[:, :-1]], 1)
        logp = dec(enc, x).logits.log_softmax(-1).gather(-1, seq.unsqueeze(-1)).squeeze(-1)
        real = (seq != PAD).float()
        return (logp * real).sum(1) / real.sum(1)

    s1 = score(beam_search(dec, enc, max_len=6, beam_size=1))
    s4 = score(beam_search(dec, enc, max_len=6, beam_size=4))
    assert bool((s4 >= s1 - 1e-4).all())


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_decoder_gradients_finite(name, cfg):
    dec, enc, x = make(name, cfg).train(), random_encoder_output(), tokens()
    enc.memory.requires_grad_(True)
    loss = F.cross_entropy(dec(enc, x).logits.flatten(0, 1), x.roll(-1, 1).flatten())
    loss.backward()
    for pname, p in dec.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", list_decoders())
def test_decoder_rejects_empty_memory_row(name):
    dec, enc = make(name, {}), random_encoder_output()
    enc.memory_mask[1] = False
    with pytest.raises(ValueError, match=r"no valid position.*\[1\]"):
        dec(enc, tokens())
    with pytest.raises(ValueError, match="no valid position"):
        dec.init_state(enc)


@pytest.mark.parametrize("name", list_decoders())
def test_decoder_overfits_tiny_batch(name):
    torch.manual_seed(0)
    dec = make(name, {}).train()
    enc = random_encoder_output(b=4, s=5)
    target = torch.randint(4, VOCAB, (4, 6))
    x = torch.cat([torch.full((4, 1), BOS), target[:, :-1]], 1)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(dec(enc, x).logits.flatten(0, 1), target.flatten())
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, f"{name} did not overfit: loss {loss.item():.3f}"
