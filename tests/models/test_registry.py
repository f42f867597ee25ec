"""Registry error paths: unknown names and keys fail fast and list the choices."""

from __future__ import annotations

import pytest

from models import create_decoder, create_encoder, list_decoders, list_encoders
from models.errors import ConfigError
from models.registry import register_decoder


def test_registry_lists_the_three_decoders():
    assert {"rnn", "rnn_attn", "transformer"} <= set(list_decoders())
    assert {"image_grid", "text", "features"} <= set(list_encoders())


def test_registry_unknown_decoder_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown decoder 'rnn_atn'; choose from \['rnn'"):
        create_decoder("rnn_atn", vocab_size=10)


@pytest.mark.parametrize("name", ["rnn", "rnn_attn", "transformer"])
def test_registry_unknown_config_key_lists_accepted(name):
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['hiden'\].*accepted: \["):
        create_decoder(name, vocab_size=10, hiden=3)


def test_registry_unknown_encoder_lists_choices():
    with pytest.raises(ConfigError, match="choose from"):
        create_encoder("resnet", d_model=8)


def test_registry_refuses_a_second_factory_under_one_name():
    with pytest.raises(ValueError, match="already registered"):
        register_decoder("rnn")(type("Other", (), {}))
