"""Evaluate a Seq2Seq model on a split: teacher-forced NLL, decoding, and every metric.

Shapes: B batch, T target length, V vocab.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.harness.batching import bucket_batches, collate
from benchmarks.harness.metrics import exact_match, sequence_metrics, token_accuracy, trim_ids
from benchmarks.tasks.base import Example, TaskData
from models.base import PAD
from models.seq2seq import Seq2Seq, beam_search, greedy


@torch.no_grad()
def decode_split(
    model: Seq2Seq,
    task: TaskData,
    examples: Sequence[Example],
    device: torch.device,
    beam_size: int = 1,
    batch_size: int = 128,
    max_len: int | None = None,
) -> tuple[list[list[int]], list[float], list[int], list[int]]:
    """Per example: generated ids, summed teacher-forced NLL (nats), its token count, and how
    many of those tokens the teacher-forced argmax gets right. Decoding stops at `max_len`
    (default: the task's cap, from its training targets; see TaskData.max_decode_len), never
    at the longest reference of `examples`, which user data could make absurdly long."""
    model.eval()
    max_len = max_len or task.max_decode_len
    hyps: list[list[int]] = [[] for _ in examples]
    nll, ntok, tf_hits = [0.0] * len(examples), [0] * len(examples), [0] * len(examples)
    for idx in bucket_batches(examples, batch_size, shuffle=False):
        batch = collate([examples[i] for i in idx], task.source_kind, idx).to(device)
        enc = model.encode(batch.source, batch.source_mask)
        logits = model.decoder(enc, batch.tokens_in, need_attn=False).logits.float()  # (B, T, V)
        token_nll = F.cross_entropy(
            logits.transpose(1, 2), batch.tokens_out, ignore_index=PAD, reduction="none"
        )  # (B, T)
        real = batch.tokens_out != PAD  # (B, T)
        hits = ((logits.argmax(-1) == batch.tokens_out) & real).sum(1)  # (B,)
        if beam_size == 1:
            out, _ = greedy(model.decoder, enc, max_len)
        else:
            out = beam_search(model.decoder, enc, max_len, beam_size=beam_size)
        # one device-to-host copy per batch and quantity, never one per example
        rows = zip(batch.index.tolist(), out.tolist(), token_nll.sum(1).tolist(),
                   real.sum(1).tolist(), hits.tolist(), strict=True)  # fmt: skip
        for i, hyp, example_nll, example_tokens, example_hits in rows:
            hyps[i], nll[i], ntok[i], tf_hits[i] = hyp, example_nll, example_tokens, example_hits
    return hyps, nll, ntok, tf_hits


def evaluate(
    model: Seq2Seq,
    task: TaskData,
    examples: Sequence[Example],
    device: torch.device,
    beam_size: int = 1,
    caption_metrics: bool = True,
    meteor: bool = True,
) -> dict[str, Any]:
    """All metrics of one split in a flat dict; `caption_metrics=False` keeps the cheap ones."""
    hyps, nll, ntok, tf_hits = decode_split(model, task, examples, device, beam_size)
    # teacher-forced accuracy beside the free-running metrics: their gap is what the causal-mask
    # ablation is about (a model that peeks at the future looks perfect only under teacher forcing)
    teacher_forced = {"tf_token_accuracy": sum(tf_hits) / max(sum(ntok), 1)}
    if not caption_metrics:
        tgt = [e.target for e in examples]
        trimmed = [trim_ids(h) for h in hyps]
        return {
            "exact_match": exact_match(trimmed, tgt),
            "token_accuracy": token_accuracy(trimmed, tgt),
            "nll_per_token": sum(nll) / max(sum(ntok), 1),
        } | teacher_forced
    return teacher_forced | sequence_metrics(
        hyps,
        [e.target for e in examples],
        [e.references for e in examples],
        task.tgt_vocab,
        [e.length for e in examples],
        meteor=meteor,
        nll=nll,
        nll_tokens=ntok,
    )
