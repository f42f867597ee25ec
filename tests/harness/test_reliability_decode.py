"""Decoding has a length cap from the task's training targets, and user data with absurd captions
is refused when loaded: one long reference can no longer make validation decode for ever."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from benchmarks.harness.config import TrainConfig
from benchmarks.harness.evaluate import decode_split
from benchmarks.harness.train import build_model
from benchmarks.tasks import TaskError, load_task
from benchmarks.tasks.base import Example
from models.base import EOS
from tests.tasks.real_data_fixtures import write_coco, write_plain


def test_decode_stops_at_the_longest_training_target_plus_margin(monkeypatch):
    """A 2,000-token reference in the decoded split, a model that never emits EOS: greedy stops
    at 3 (every training target) + 5 (DECODE_MARGIN) tokens, not at 2,005."""
    task = load_task("reverse", length=3, n_train=16, n_val=4, n_test=4, num_symbols=5)
    absurd = Example(task.val[0].source, [4] * 2000, 3, id="absurd")
    task.val.append(absurd)  # as if the user's data had it
    model = build_model(task, TrainConfig(decoder="rnn", d_model=8))
    step = model.decoder.step

    def never_eos(state, token):
        logits, state, attn = step(state, token)
        logits[:, EOS] = -math.inf
        return logits, state, attn

    monkeypatch.setattr(model.decoder, "step", never_eos)
    hyps, _, ntok, _ = decode_split(model, task, [absurd], torch.device("cpu"))
    assert ntok == [2001]  # the reference itself is still scored (teacher forcing, EOS included)
    assert len(hyps[0]) == 3 + 5


def test_scan_length_split_decodes_as_long_as_its_test_targets():
    """SCAN's length split tests on longer targets than it trains on, by design: its cap covers
    them (the grammar bounds them), so no committed number changes."""
    task = load_task("scan", split="length", n_val=20, max_test=200)
    longest_train = max(len(e.target) for e in task.train)
    longest = max(len(e.target) for e in task.train + task.val + task.test)
    assert longest > longest_train and task.max_decode_len == longest + 5


def test_plain_refuses_an_absurd_caption_naming_image_and_caption(tmp_path):
    files = write_plain(tmp_path, n_images=6)
    captions = json.loads(files.captions.read_text())
    captions["2"].append("word " * 200_000)
    files.captions.write_text(json.dumps(captions))
    args = {"captions": str(files.captions), "features": str(files.features)}
    with pytest.raises(TaskError) as err:
        load_task("plain", **args)
    assert f"{files.captions}['2']: caption 2 has 200000 words, more than " in str(err.value)
    assert "max_caption_words=100" in str(err.value)


def test_plain_caption_limit_is_a_task_argument(tmp_path):
    files = write_plain(tmp_path, n_images=6)
    captions = json.loads(files.captions.read_text())
    captions["2"].append("word " * 150)
    files.captions.write_text(json.dumps(captions))
    args = {"captions": str(files.captions), "features": str(files.features)}
    with pytest.raises(TaskError, match="caption 2 has 150 words"):
        load_task("plain", **args)
    assert load_task("plain", **args, max_caption_words=150).config["max_caption_words"] == 150


def test_coco_refuses_an_absurd_caption_row(tmp_path):
    write_coco(tmp_path)
    words = 130

    def widen(caps: np.ndarray) -> np.ndarray:  # (N, 17) -> (N, 140), row 3 a 130-word caption
        wide = np.zeros((len(caps), words + 10), dtype=caps.dtype)
        wide[:, : caps.shape[1]] = caps
        wide[3, : words + 2] = [1] + [4] * words + [2]  # <START> w ... w <END>
        return wide

    with h5py.File(tmp_path / "coco2014_captions.h5", "a") as f:
        f["wide"] = widen(f["train_captions"][()])
        del f["train_captions"]
        f.move("wide", "train_captions")
    with pytest.raises(TaskError, match=r"'train_captions'\]: row 3 has 130 words, more than"):
        load_task("coco", data_dir=str(tmp_path))
