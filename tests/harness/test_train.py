"""The shared training harness: checkpoints and resume, schedule, loss, early stopping, and
end-to-end runs of every decoder on the embedded and the real-data (COCO, plain) formats.

Tasks are tiny (reverse of 4 symbols out of 6; a dozen captioned images) and models narrow
(d_model 16-32), so each run takes well under a second. Shapes: B batch, T target length, V vocab.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from benchmarks.harness import checkpoint as ckpt_mod
from benchmarks.harness import train as train_mod
from benchmarks.harness.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from benchmarks.harness.train import TrainConfig, build_model, lr_factor, sequence_loss, train
from benchmarks.tasks import load_task
from benchmarks.tasks.base import TaskData
from models import list_decoders
from models.base import PAD
from tests.tasks.real_data_fixtures import write_coco, write_plain

CAPTION_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
SEQUENCE_KEYS = ("exact_match", "token_accuracy", "perplexity", "nll_per_token", "n_examples")


def reverse_task(num_symbols: int = 6, n_train: int = 64) -> TaskData:
    return load_task(
        "reverse", length=4, n_train=n_train, n_val=16, n_test=16, num_symbols=num_symbols
    )


def small_config(tmp: Path | None = None, **overrides) -> TrainConfig:
    """A run of a few steps on a narrow model; `tmp` = checkpoint directory."""
    base = dict(
        decoder="rnn_attn",
        d_model=16,
        batch_size=16,
        max_steps=6,
        lr=1e-2,
        warmup_steps=2,
        eval_every=3,
        meteor=False,
        checkpoint_dir=str(tmp) if tmp else None,
    )
    return TrainConfig(**{**base, **overrides})


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def untimed(history: list[dict]) -> list[dict]:
    """A history without its wall-clock column: what a seed determines."""
    return [{k: v for k, v in row.items() if k != "train_s"} for row in history]


class Killed(Exception):
    """Stands in for the process being killed right after a checkpoint was written."""


# --- checkpoints -----------------------------------------------------------------------------


def test_train_checkpoint_round_trip(tmp_path):
    task = reverse_task()
    cfg = small_config(tmp_path)
    train(task, cfg, task_args={"length": 4})
    path = tmp_path / "last.pt"
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["decoder"] == "rnn_attn"
    assert ckpt["vocab"] == task.tgt_vocab.idx_to_word
    assert ckpt["config"] == asdict(cfg)
    assert ckpt["task"] == {"name": "reverse", "args": {"length": 4}}
    assert ckpt["progress"]["step"] == cfg.max_steps
    fresh = build_model(task, cfg).state_dict()
    assert ckpt["model"].keys() == fresh.keys()
    assert all(ckpt["model"][k].shape == v.shape for k, v in fresh.items())
    assert ckpt["optimizer"]["state"] and ckpt["optimizer"]["param_groups"]
    assert ckpt["scheduler"]["last_epoch"] == cfg.max_steps


def test_train_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    # dropout > 0 so the restored RNG state matters, not only the batch order
    task = reverse_task()
    cfg = dict(max_steps=8, eval_every=4, dropout=0.1)
    whole = train(task, small_config(tmp_path / "whole", **cfg))

    real_save = train_mod.save_checkpoint

    def save_then_die(path, payload):
        real_save(path, payload)
        raise Killed

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(task, small_config(tmp_path / "split", **cfg))
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = train(task, small_config(tmp_path / "split", **cfg))

    assert (resumed.resumed_from, resumed.steps) == (4, 8)
    assert untimed(resumed.history) == untimed(whole.history)
    a = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_resume_extends_a_finished_run(tmp_path):
    # Weights differ from a fresh 8-step run by design: the cosine schedule is a function of
    # max_steps, so steps 0-3 of a 4-step run used other learning rates than those of an 8-step
    # run; exact equality is tested above on a run killed mid-way.
    task = reverse_task()
    first = train(task, small_config(tmp_path, max_steps=4, eval_every=2))
    second = train(task, small_config(tmp_path, max_steps=8, eval_every=2))
    assert (first.resumed_from, first.steps) == (0, 4)
    assert (second.resumed_from, second.steps) == (4, 8)
    assert [row["step"] for row in second.history] == [2, 4, 6, 8]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.1 * 1e-2)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({"decoder": "rnn"}, {"decoder": "rnn_attn"}, "decoder 'rnn', not 'rnn_attn'"),
        ({"d_model": 16}, {"d_model": 24}, "does not fit this model"),
    ],
)
def test_train_refuses_incompatible_checkpoint(tmp_path, first, second, expected):
    task = reverse_task()
    train(task, small_config(tmp_path, max_steps=3, **first))
    with pytest.raises(CheckpointError) as exc:
        train(task, small_config(tmp_path, max_steps=6, **second))
    msg = one_line(exc)
    assert str(tmp_path / "last.pt") in msg and expected in msg


def test_train_refuses_checkpoint_of_other_vocabulary(tmp_path):
    train(reverse_task(num_symbols=6), small_config(tmp_path, max_steps=3))
    with pytest.raises(CheckpointError) as exc:
        train(reverse_task(num_symbols=7), small_config(tmp_path, max_steps=6))
    msg = one_line(exc)
    assert str(tmp_path / "last.pt") in msg and "different vocabulary (10 vs 11 words" in msg


@pytest.mark.parametrize("content", ["random", "empty", "truncated"])
def test_load_checkpoint_corrupt_file(tmp_path, content):
    path = tmp_path / "last.pt"
    if content == "truncated":
        save_checkpoint(path, {"w": torch.ones(64)})
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(os.urandom(512) if content == "random" else b"")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert f"cannot read checkpoint {path}" in one_line(exc)


def test_load_checkpoint_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_checkpoint_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "last.pt"
    save_checkpoint(path, {"w": torch.zeros(3)})
    save_checkpoint(path, {"w": torch.ones(3)})
    assert os.listdir(path.parent) == ["last.pt"]
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))


def test_save_checkpoint_interrupted_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"w": torch.arange(4.0)})

    def half_then_fail(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, {"w": torch.zeros(4)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.pt"]
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(4.0))


# --- schedule and loss -----------------------------------------------------------------------


def test_lr_factor_warmup_peak_cosine():
    warmup, total = 10, 110
    rise = [lr_factor(s, warmup, total) for s in range(warmup)]
    assert rise == pytest.approx([(s + 1) / warmup for s in range(warmup)])  # linear to 1
    decay = [lr_factor(s, warmup, total) for s in range(warmup, total + 1)]
    assert decay[0] == pytest.approx(1.0)
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))
    assert lr_factor(warmup + 50, warmup, total) == pytest.approx(0.55)  # half-way: mean of 1, 0.1
    assert decay[-1] == pytest.approx(0.1)
    assert lr_factor(total + 50, warmup, total) == pytest.approx(0.1)  # stays at the floor


def test_raising_the_cap_past_decay_steps_leaves_the_earlier_run_identical():
    task = reverse_task()
    short = train(task, small_config(max_steps=6))
    longer = train(task, small_config(max_steps=12, decay_steps=6))
    assert untimed(longer.history[:2]) == untimed(short.history)  # steps 3 and 6: the same
    assert longer.steps > short.steps or longer.stop_reason != "cap"


def test_decay_steps_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="decay_steps=0: must be an integer >= 1"):
        small_config(decay_steps=0)


def test_sequence_loss_ignores_pad_columns():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g)  # (B, T, V)
    targets = torch.tensor([[4, 5, 2], [6, 2, PAD]])  # (B, T)
    padded_logits = torch.cat([logits, torch.randn(2, 4, 7, generator=g)], 1)  # (B, T+4, V)
    padded_targets = torch.cat([targets, torch.full((2, 4), PAD)], 1)  # (B, T+4)
    base = sequence_loss(logits, targets)
    assert torch.allclose(base, sequence_loss(padded_logits, padded_targets))
    by_hand = torch.nn.functional.cross_entropy(logits[targets != PAD], targets[targets != PAD])
    assert torch.allclose(base, by_hand)


def test_sequence_loss_label_smoothing_changes_loss():
    logits = torch.randn(2, 3, 7)  # (B, T, V)
    targets = torch.tensor([[4, 5, 2], [6, 2, PAD]])
    plain, smoothed = sequence_loss(logits, targets), sequence_loss(logits, targets, 0.1)
    assert torch.isfinite(smoothed) and not torch.allclose(plain, smoothed)


# --- early stopping and end-to-end -----------------------------------------------------------


def test_train_early_stopping_when_metric_cannot_improve():
    task = reverse_task()
    result = train(task, small_config(lr=0.0, patience=1, eval_every=2, max_steps=40))
    assert result.stop_reason == "plateau"
    assert result.steps == 4  # evaluations at steps 2 (best) and 4 (no better: patience spent)
    assert [row["step"] for row in result.history] == [2, 4]


def caption_task(tmp: Path, kind: str) -> TaskData:
    """A tiny captioning task in the cs231n COCO format or the plain format (2-D / 3-D)."""
    if kind == "coco":
        write_coco(tmp, n_train=9, n_val=6)
        return load_task("coco", data_dir=str(tmp), max_eval=3)
    files = write_plain(tmp, n_images=12, spatial=kind == "plain_3d", fmt="npy")
    return load_task(
        "plain",
        captions=str(files.captions),
        features=str(files.features),
        val_fraction=0.25,
        test_fraction=0.25,
    )


@pytest.mark.parametrize("decoder", list_decoders())
@pytest.mark.parametrize("kind", ["coco", "plain_2d", "plain_3d"])
def test_train_real_data_formats_end_to_end(tmp_path, kind, decoder):
    task = caption_task(tmp_path, kind)
    result = train(task, small_config(decoder=decoder, max_steps=8, eval_every=4))
    assert result.steps == 8 and result.params > 0
    assert math.isfinite(result.val["nll_per_token"])
    assert math.isfinite(result.test["perplexity"]) and result.test["perplexity"] >= 1.0
    for key in CAPTION_KEYS + SEQUENCE_KEYS:
        assert key in result.test, key
    for key in ("bleu1", "bleu4", "rouge_l", "cider", "exact_match", "token_accuracy"):
        assert math.isfinite(result.test[key]) and result.test[key] >= 0.0, key
    assert result.test["meteor"] is None and "disabled" in result.test["meteor_missing_reason"]


@pytest.mark.slow  # ~10 s: METEOR starts a JVM and loads its paraphrase table
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR 1.5 needs java")
def test_train_meteor_flows_through(tmp_path):
    task = caption_task(tmp_path, "plain_2d")
    result = train(task, small_config(decoder="transformer", max_steps=4, meteor=True))
    assert isinstance(result.test["meteor"], float) and 0.0 <= result.test["meteor"] <= 1.0
    assert "meteor_missing_reason" not in result.test


def test_train_rnn_attn_learns_reverse():
    # measured (seeds 0-5): exact match 0.94-1.0 at 150 steps (~1 s), 0.81-1.0 at 100 steps
    task = reverse_task(n_train=512)
    cfg = small_config(d_model=32, batch_size=32, max_steps=150, warmup_steps=10, eval_every=150)
    result = train(task, cfg)
    assert result.test["exact_match"] >= 0.9, result.test
    assert result.val["exact_match"] >= 0.9, result.val
