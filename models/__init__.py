"""attnbench models: what is compared. Pure nn.Modules; never imports `benchmarks`.

Importing this package registers every decoder, encoder and attention kernel.
"""

from . import attention, encoders, rnn, rnn_attn, transformer  # noqa: F401  (registers all)
from .base import BOS, EOS, PAD, UNK, Decoder, DecoderOutput, EncoderOutput
from .registry import (
    create_decoder,
    create_encoder,
    create_kernel,
    list_decoders,
    list_encoders,
    list_kernels,
    register_decoder,
    register_encoder,
    register_kernel,
)

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "Decoder",
    "DecoderOutput",
    "EncoderOutput",
    "create_decoder",
    "create_encoder",
    "create_kernel",
    "list_decoders",
    "list_encoders",
    "list_kernels",
    "register_decoder",
    "register_encoder",
    "register_kernel",
]
