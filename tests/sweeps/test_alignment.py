"""The alignment statistic: output tokens whose attention argmax lies on their source span."""

from __future__ import annotations

import pytest
import torch

from benchmarks.harness.train import TrainConfig, build_model
from benchmarks.sweeps.alignment_stats import alignment_stats
from benchmarks.tasks import load_task
from models.base import DecoderOutput


@pytest.mark.parametrize("task_name", ["digits", "reverse"])
@pytest.mark.parametrize("shift,expected", [(0, 1.0), (1, 0.0)])
def test_alignment_stats_counts_tokens_attending_their_span(task_name, shift, expected):
    """An oracle decoder attending the middle of each token's span scores 1; attending the
    next token's span (digits) or the next position (reverse) scores 0."""
    task = load_task(task_name, length=3, n_train=4, n_val=2, n_test=6)
    model = build_model(task, TrainConfig(decoder="rnn_attn", d_model=16))
    stride = model.encoder.stride

    def oracle(enc, tokens):
        b, t = tokens.shape
        attn = torch.zeros(b, t, enc.memory.shape[1])  # (B, T, S)
        for i, ex in enumerate(task.test[:b]):
            for j in range(len(ex.alignment)):
                start, end = ex.alignment[min(j + shift, len(ex.alignment) - 1)]
                if shift and j + shift >= len(ex.alignment):
                    start, end = ex.alignment[0]  # the last token looks at the first span
                attn[i, j, (start // stride + (end - 1) // stride) // 2] = 1.0
        return DecoderOutput(torch.zeros(b, t, len(task.tgt_vocab)), attn)

    model.decoder.forward = oracle
    stats = alignment_stats(model, task, torch.device("cpu"))
    assert stats["tokens"] == 6 * 3
    assert stats["fraction"] == pytest.approx(expected)
