"""The stopping rule (harness/config.py): target, plateau and cap each end a run and say so in
`stop_reason`; tokens_to_95 marks the first evaluation at 95 % exact match; a run killed mid-way
and resumed from its checkpoint ends exactly as an uninterrupted one, rule state included.

Runs are tiny (reverse of 4 symbols out of 6, d_model 16-32), each well under a few seconds.
"""

from __future__ import annotations

import pytest

from benchmarks.harness import stopping
from benchmarks.harness import train as train_mod
from benchmarks.harness.config import TrainConfig
from benchmarks.harness.stopping import tokens_to
from benchmarks.harness.train import train
from benchmarks.tasks import load_task
from models.errors import ConfigError

TASK = dict(length=4, n_train=512, n_val=32, n_test=32, num_symbols=6)


def config(**overrides) -> TrainConfig:
    base = dict(decoder="rnn_attn", d_model=32, batch_size=32, max_steps=150, lr=1e-2,
                warmup_steps=10, eval_every=10, meteor=False)  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def untimed(result) -> dict:
    """Everything a seed determines: the row's numbers without wall-clock times."""
    history = [{k: v for k, v in h.items() if k != "train_s"} for h in result.history]
    return {"stop": result.stop_reason, "steps": result.steps, "tokens": result.tokens,
            "t95": result.tokens_to_95, "history": history, "test": result.test}  # fmt: skip


def test_stopping_target_ends_the_run_early() -> None:
    result = train(load_task("reverse", **TASK), config(target=0.9))
    assert result.stop_reason == "target"
    assert result.steps < 150 and result.history[-1]["exact_match"] >= 0.9
    assert all(h["exact_match"] < 0.9 for h in result.history[:-1])  # the first one that reached it


def test_stopping_plateau_when_the_metric_cannot_improve() -> None:
    result = train(load_task("reverse", **TASK), config(lr=0.0, patience=2, target=0.99))
    assert result.stop_reason == "plateau"
    assert [h["step"] for h in result.history] == [10, 20, 30]  # best at 10, then 2 without gain


def test_stopping_cap_when_no_rule_fires() -> None:
    result = train(load_task("reverse", **TASK), config(max_steps=20))
    assert (result.stop_reason, result.steps) == ("cap", 20)


def test_stopping_target_on_a_lower_is_better_metric() -> None:
    cfg = config(target_metric="nll_per_token", target=1.0, max_steps=150)
    result = train(load_task("reverse", **TASK), cfg)
    assert result.stop_reason == "target" and result.history[-1]["nll_per_token"] <= 1.0


def test_tokens_to_95_is_the_first_evaluation_at_95_percent() -> None:
    history = [{"tokens": 100, "exact_match": 0.5}, {"tokens": 200, "exact_match": 0.95},
               {"tokens": 300, "exact_match": 0.99}]  # fmt: skip
    assert tokens_to(history, "exact_match", 0.95) == 200
    assert tokens_to(history[:1], "exact_match", 0.95) is None
    result = train(load_task("reverse", **TASK), config(target=0.99))
    first = next(h for h in result.history if h["exact_match"] >= 0.95)
    assert result.tokens_to_95 == first["tokens"] > 0


class Killed(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


def test_stopping_resumed_mid_run_gives_the_identical_row(tmp_path, monkeypatch) -> None:
    task = load_task("reverse", **TASK)
    rule = dict(target=0.97, patience=5, dropout=0.1)  # dropout: the RNG state must resume too
    whole = train(task, config(checkpoint_dir=str(tmp_path / "whole"), **rule))
    assert whole.stop_reason == "target" and whole.steps > 20
    real_save, saves = train_mod.save_checkpoint, []

    def save_twice_then_die(path, payload):
        real_save(path, payload)
        saves.append(path)
        if len(saves) == 2:
            raise Killed

    monkeypatch.setattr(train_mod, "save_checkpoint", save_twice_then_die)
    with pytest.raises(Killed):
        train(task, config(checkpoint_dir=str(tmp_path / "split"), **rule))
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = train(task, config(checkpoint_dir=str(tmp_path / "split"), **rule))
    assert resumed.resumed_from == 20
    assert untimed(resumed) == untimed(whole)


def test_stopping_rule_fields_are_checked_before_training() -> None:
    with pytest.raises(ConfigError, match="target_metric='bleu4'"):
        config(target_metric="bleu4")
    with pytest.raises(ConfigError, match="min_delta=-0.1"):
        config(min_delta=-0.1)


def scripted(monkeypatch, sequence: list[tuple[float, float]]) -> None:
    """Validation passes return (exact match, token accuracy) from `sequence`, in order; the
    final test-split evaluation gets the last entry again."""
    values = iter([*sequence, sequence[-1]])

    def fake_evaluate(*args, **kwargs) -> dict:
        em, tok = next(values)
        return {"exact_match": em, "token_accuracy": tok, "nll_per_token": 1.0,
                "tf_token_accuracy": tok}  # fmt: skip

    monkeypatch.setattr(stopping, "evaluate", fake_evaluate)


def test_stopping_plateau_waits_while_either_metric_climbs(monkeypatch) -> None:
    """Token accuracy saturated while exact match climbs is learning; so is the reverse."""
    sequence = [(0.5, 0.99), (0.6, 0.99), (0.7, 0.99), (0.7, 0.99), (0.0, 0.30), (0.0, 0.30)]
    sequence[4:] = [(0.7, 0.99), (0.7, 0.99)]  # then neither gains: plateau after 2 evaluations
    scripted(monkeypatch, sequence)
    result = train(load_task("reverse", **TASK), config(patience=2, max_steps=200))
    assert result.stop_reason == "plateau"
    assert [h["step"] for h in result.history] == [10, 20, 30, 40, 50]


def test_stopping_plateau_waits_while_token_accuracy_climbs_at_zero_exact_match(
    monkeypatch,
) -> None:
    scripted(monkeypatch, [(0.0, 0.10), (0.0, 0.12), (0.0, 0.14), (0.0, 0.14), (0.0, 0.14)])
    result = train(load_task("reverse", **TASK), config(patience=2, max_steps=200))
    assert result.stop_reason == "plateau" and result.steps == 50  # gains at 10, 20, 30


def test_stopping_keeps_the_weights_of_the_best_exact_match(monkeypatch) -> None:
    scripted(monkeypatch, [(0.2, 0.95), (0.6, 0.90), (0.4, 0.99), (0.4, 0.99), (0.4, 0.99)])
    result = train(load_task("reverse", **TASK), config(patience=2, max_steps=200))
    assert result.val["exact_match"] == 0.6  # not the token-accuracy best (0.99)
