"""The training loop's GPU-minded pieces, checked on the CPU: the step timer, the warm-up that
keeps CUDA set-up out of train_s, the once-per-evaluation loss check, and the batch check made
on the CPU before a batch leaves it."""

from __future__ import annotations

import pytest
import torch

from benchmarks.harness.batching import collate
from benchmarks.harness.step_timer import StepTimer, warm_up
from benchmarks.harness.train import finite_losses
from benchmarks.tasks.base import Example
from models.errors import ConfigError


def test_step_timer_counts_only_the_bracketed_steps() -> None:
    timer = StepTimer(torch.device("cpu"))
    with timer.step():
        sum(range(10_000))
    first = timer.collect()
    assert first > 0
    assert timer.collect() == 0.0  # collected: nothing left


def test_warm_up_leaves_weights_and_random_stream_untouched() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = (torch.manual_seed(1), torch.rand(3))[1]
    torch.manual_seed(1)
    warm_up(model, lambda m: m(torch.randn(2, 4)).sum())
    assert torch.equal(torch.rand(3), expected)  # the run draws what it would have drawn
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_finite_losses_reads_the_interval_once_and_names_the_bad_step() -> None:
    state = {"step": 10}
    assert finite_losses([torch.tensor(1.0), torch.tensor(0.5)], state) == [1.0, 0.5]
    bad = [torch.tensor(1.0), torch.tensor(float("nan")), torch.tensor(2.0)]
    with pytest.raises(FloatingPointError, match="non-finite training loss nan at step 8"):
        finite_losses(bad, state)


def test_a_batch_leaving_the_cpu_is_checked_there_first() -> None:
    """The models skip data-dependent checks on a GPU; the batch gets them before it moves
    (the meta device stands in for a GPU: any non-CPU device)."""
    import numpy as np

    good = Example(np.array([5, 6], dtype=np.int64), [4], 1)
    empty = Example(np.array([], dtype=np.int64), [4], 1)
    assert collate([good, good], "tokens").to("meta").source.device.type == "meta"
    with pytest.raises(ConfigError, match=r"examples \[1\] have an empty source"):
        collate([good, empty], "tokens").to("meta")
    negative = Example(np.array([5, -3], dtype=np.int64), [4], 1)
    with pytest.raises(ConfigError, match="negative source token id -3"):
        collate([good, negative], "tokens").to("meta")
