"""Encoders: shapes, masks, padding invariance and one-line errors."""

from __future__ import annotations

import pytest
import torch

from models import create_encoder
from models.base import PAD

D = 32


def test_image_grid_shapes_and_mask_downsampling():
    enc = create_encoder("image_grid", d_model=D, height=10).eval()
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    out = enc(torch.randn(2, 1, 10, 40), mask)
    assert out.memory.shape == (2, 20, D) and out.summary.shape == (2, D)
    assert out.memory_mask.sum(1).tolist() == [20, 15]


def test_image_grid_padding_invariance():
    enc = create_encoder("image_grid", d_model=D, height=10).eval()
    img = torch.randn(1, 1, 10, 24)
    a = enc(img, torch.ones(1, 24, dtype=torch.bool))
    padded = torch.cat([img, torch.randn(1, 1, 10, 10)], -1)  # garbage right padding
    mask = torch.cat([torch.ones(1, 24), torch.zeros(1, 10)], -1).bool()
    b = enc(padded, mask)
    torch.testing.assert_close(a.memory, b.memory[:, :12])
    torch.testing.assert_close(a.summary, b.summary)


def test_image_grid_positions_break_translation_symmetry():
    """The same digit at two places must give different memory (attention needs to know where)."""
    enc = create_encoder("image_grid", d_model=D, height=10).eval()
    img = torch.zeros(1, 1, 10, 32)
    img[..., 2:6] = 1.0
    shifted = torch.roll(img, 16, dims=-1)
    a, b = enc(img).memory[0], enc(shifted).memory[0]
    assert not torch.allclose(a[1:3], b[9:11], atol=1e-4)


def test_text_encoder_padding_invariance():
    enc = create_encoder("text", vocab_size=20, d_model=D).eval()
    x = torch.randint(4, 20, (1, 6))
    padded = torch.cat([x, torch.full((1, 3), PAD)], 1)
    a, b = enc(x), enc(padded)
    torch.testing.assert_close(a.memory, b.memory[:, :6])
    torch.testing.assert_close(a.summary, b.summary)
    assert b.memory_mask.tolist() == [[True] * 6 + [False] * 3]


def test_text_encoder_rejects_out_of_vocab_ids():
    enc = create_encoder("text", vocab_size=20, d_model=D)
    with pytest.raises(ValueError, match="outside"):
        enc(torch.tensor([[5, 25]]))


@pytest.mark.parametrize("shape", [(3, 12), (3, 4, 12)])
def test_features_projector_vector_and_grid(shape):
    enc = create_encoder("features", feature_dim=12, d_model=D)
    out = enc(torch.randn(*shape))
    s = 1 if len(shape) == 2 else shape[1]
    assert out.memory.shape == (3, s, D) and bool(out.memory_mask.all())


def test_features_projector_rejects_wrong_width():
    enc = create_encoder("features", feature_dim=12, d_model=D)
    with pytest.raises(ValueError, match="F=12; got 7"):
        enc(torch.randn(3, 7))


def test_image_grid_batchnorm_statistics_ignore_padding():
    """In training mode the batch statistics skip padded columns: padding changes nothing."""
    enc = create_encoder("image_grid", d_model=D, height=10).train()
    img = torch.rand(2, 1, 10, 24)
    a = enc(img, torch.ones(2, 24, dtype=torch.bool))
    padded = torch.cat([img, torch.rand(2, 1, 10, 16)], -1)
    mask = torch.cat([torch.ones(2, 24), torch.zeros(2, 16)], -1).bool()
    b = enc(padded, mask)
    torch.testing.assert_close(a.memory, b.memory[:, :12], rtol=1e-5, atol=1e-5)
    assert enc.norms[0].num_batches_tracked.item() == 2


@pytest.mark.parametrize(
    "name,cfg,source",
    [
        ("image_grid", {"height": 10}, torch.rand(2, 1, 10, 36)),
        ("text", {"vocab_size": 20}, torch.randint(4, 20, (2, 9))),
        ("features", {"feature_dim": 12}, torch.randn(2, 5, 12)),
    ],
)
def test_encoder_stride_matches_memory_length(name, cfg, source):
    """`stride` maps a source span to memory positions (alignment stats rely on it)."""
    enc = create_encoder(name, d_model=D, **cfg).eval()
    out = enc(source)
    assert out.memory.shape[1] == source.shape[-1 if name == "image_grid" else 1] // enc.stride
