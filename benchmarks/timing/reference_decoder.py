"""PyTorch's own nn.TransformerDecoder behind our decoder's teacher-forcing call: the baseline
that the `transformer` decoder's training speed is measured against.

Same depth, width, heads, FFN width, pre-norm and final LayerNorm as `transformer`'s defaults,
the same sqrt(D)-scaled embedding plus sinusoidal positions and output projection, so the two
differ only in how the layers are implemented. Shapes: B batch, T target length, S memory, D, V.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from models.base import DecoderOutput, EncoderOutput
from models.positions import sinusoidal_table

REFERENCE = "nn.TransformerDecoder"  # its name in benchmark records, tables and legends


class TorchTransformerDecoder(nn.Module):
    """embed -> nn.TransformerDecoder(norm_first=True) -> LayerNorm -> Linear, batch-first."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        max_len: int = 1024,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)
        layer = nn.TransformerDecoderLayer(
            d_model, num_heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, enc: EncoderOutput, tokens: Tensor, need_attn: bool = False) -> DecoderOutput:
        t = tokens.shape[1]
        x = self.embed(tokens) * math.sqrt(self.d_model) + self.pe[:t]  # (B, T, D)
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)  # (T, T)
        h = self.layers(
            x,
            enc.memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=~enc.memory_mask,  # (B, S) True = padded, torch's convention
        )  # (B, T, D)
        return DecoderOutput(self.out(h), None)
