"""Does attention look where the output came from? The seed's alignment claim, as a number.

For tasks whose examples carry a ground-truth `alignment` (the source span that produced each
target token: a digit's pixel columns, the reversed token's position), we take the decoder's
attention over memory under teacher forcing and count the output tokens whose argmax position
falls inside their span. Shapes: B batch, T target length, S memory positions.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.harness.batching import collate
from benchmarks.tasks.base import TaskData
from models.base import EOS
from models.seq2seq import Seq2Seq


@torch.no_grad()
def alignment_stats(
    model: Seq2Seq, task: TaskData, device: torch.device, n_examples: int = 200, keep: int = 2
) -> dict[str, Any]:
    """{"fraction": hits / tokens, "tokens": n, "examples": [attention matrices for plots]}.
    fraction is None when the decoder has no attention or the task no alignment."""
    examples = [e for e in task.test[:n_examples] if e.alignment is not None]
    if not examples:
        return {"fraction": None, "tokens": 0, "examples": [], "why": "task has no alignment"}
    model.eval()
    stride = model.encoder.stride  # source units per memory position; every encoder declares it
    batch = collate(examples, task.source_kind).to(device)
    enc = model.encode(batch.source, batch.source_mask)
    attn = model.decoder(enc, batch.tokens_in).attn  # (B, T, S) or None
    if attn is None:
        return {"fraction": None, "tokens": 0, "examples": [], "why": "decoder has no attention"}
    argmax = attn.float().argmax(-1).cpu()  # (B, T)
    hits = tokens = 0
    for b, ex in enumerate(examples):
        for t, (start, end) in enumerate(ex.alignment):
            lo, hi = start // stride, (end - 1) // stride  # memory positions covering the span
            hits += int(lo <= int(argmax[b, t]) <= hi)
            tokens += 1
    kept = []
    for b, ex in enumerate(examples[:keep]):
        s_real = int(enc.memory_mask[b].sum())
        t_real = len(ex.target)
        kept.append(
            {
                "id": ex.id,
                "attn": attn[b, :t_real, :s_real].float().cpu().numpy().round(4).tolist(),  # (T, S)
                "out_words": task.tgt_vocab.decode(ex.target + [EOS]),
                "in_labels": task.src_vocab.decode(ex.source.tolist()) if task.src_vocab else None,
                "image": ex.source[0].round(3).tolist() if task.source_kind == "image" else None,
            }
        )
    return {"fraction": hits / tokens, "tokens": tokens, "examples": kept}
