"""`python -m benchmarks ablations`: the seed's claims, each measured.

1. Context-vector bottleneck -> the quality sweep itself (benchmarks/sweeps/quality.py).
2. Alignment: heat maps + the fraction of output tokens whose attention argmax falls on the input
   position that produced them (rnn_attn and Transformer, digits and reverse).
3. sqrt(D) scaling: softmax entropy and logit-gradient norm at initialisation across Dh (no
   training, `scaling_init`), plus the training curve of an unscaled vs scaled Transformer.
4. Positional encoding: sinusoidal vs learned vs none on reverse and sort.
5. Causal mask: trained without it, teacher-forced accuracy vs free-running (greedy) accuracy.
6. Alignment function for rnn_attn: additive vs dot vs general vs scaled_dot.
Shapes: B batch, H heads, T queries, S keys, Dh head width.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.quality import Profile, budget

SCALING_DH = (16, 32, 64, 128, 256, 512, 1024)
# Ablation cells are few, and a variant that has not trained says nothing about the variant:
# they get 4x the quality sweep's steps, at the shortest lengths (measured: at 1x the Transformer
# stays at 0% exact match even on reverse L=8).
ABLATION_STEPS = 4


def _cell(
    profile: Profile,
    sweep: str,
    task: str,
    length: int,
    decoder: str,
    label: str,
    decoder_cfg: dict[str, Any],
    eval_every: int | None = None,
    **extra: Any,
) -> Cell:
    sizes = profile.task_sizes
    steps = profile.steps * ABLATION_STEPS
    train = budget(profile, decoder, length, seed=0, steps=steps) | {"decoder_cfg": decoder_cfg}
    if eval_every:
        train["eval_every"] = eval_every
    return Cell(
        sweep,
        task,
        {"length": length, "seed": 0, **sizes},
        decoder,
        train,
        label=label,
        length=length,
        extra=extra,
    )


def ablation_cells(profile: Profile) -> list[Cell]:
    """Every training run the ablations need, one seed each (the quality sweep has three)."""
    short, mid = profile.reverse_lengths[0], profile.reverse_lengths[0] * 2  # 8, 16 by default
    curve_every = max(10, profile.steps * ABLATION_STEPS // 10)
    cells = []
    for task, length in (
        ("digits", profile.digits_lengths[min(1, len(profile.digits_lengths) - 1)]),
        ("reverse", short),
    ):
        for dec in ("rnn_attn", "transformer"):
            cells.append(_cell(profile, "alignment", task, length, dec, "", {}, alignment=True))
    for task in ("reverse", "sort"):
        for pos in ("sinusoidal", "learned", "none"):
            cells.append(
                _cell(
                    profile,
                    "positional",
                    task,
                    short,
                    "transformer",
                    f"positional={pos}",
                    {"positional": pos},
                )
            )
    for causal in (True, False):
        cells.append(
            _cell(
                profile,
                "causal",
                "reverse",
                short,
                "transformer",
                f"causal={causal}",
                {"causal": causal},
            )
        )
    for fn in ("additive", "dot", "general", "scaled_dot"):
        cells.append(
            _cell(
                profile,
                "alignment_fn",
                "reverse",
                mid,
                "rnn_attn",
                f"alignment={fn}",
                {"alignment": fn},
            )
        )
    for scaled in (True, False):
        # one head so Dh = d_model: the unscaled logits grow by sqrt(Dh) = 8x at d_model 64
        cfg = {"kernel": "dot", "kernel_cfg": {"scaled": scaled}, "num_heads": 1}
        cells.append(
            _cell(
                profile,
                "scaling",
                "reverse",
                short,
                "transformer",
                f"scaled={scaled}",
                cfg,
                eval_every=curve_every,
            )
        )
    return cells


def scaling_at_init(
    dh: int, scaled: bool, n_keys: int = 64, seed: int = 0, batch: int = 64
) -> dict[str, float]:
    """Softmax statistics of q.k logits for unit-variance q, k (what Xavier-initialised
    projections of normalised inputs give): their std grows like sqrt(Dh) unless scaled, and the
    softmax saturates, starving the logits of gradient (Vaswani et al. 2017 §3.2.1 footnote)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 1, dh, generator=g)  # (B, 1, Dh)
    k = torch.randn(batch, n_keys, dh, generator=g)  # (B, S, Dh)
    # values scaled so upstream . v_s ~ N(0, 1) at every Dh: the gradient then reflects only
    # the softmax's saturation, not the width of the value vectors
    v = torch.randn(batch, n_keys, dh, generator=g) / math.sqrt(dh)  # (B, S, Dh)
    upstream = torch.randn(batch, 1, dh, generator=g)  # (B, 1, Dh) a random loss direction
    logits = (q @ k.transpose(1, 2)) / (math.sqrt(dh) if scaled else 1.0)  # (B, 1, S)
    logits.requires_grad_(True)
    p = logits.softmax(-1)  # (B, 1, S)
    ((p @ v) * upstream).sum().backward()
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1).mean().item()
    return {
        "dh": dh,
        "scaled": scaled,
        "n_keys": n_keys,
        "seed": seed,
        "entropy": entropy,
        "entropy_ratio": entropy / math.log(n_keys),
        "logit_std": logits.detach().std().item(),
        "grad_norm": logits.grad.norm(dim=-1).mean().item(),
    }


def scaling_init_rows(seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, Any]]:
    return [
        scaling_at_init(dh, scaled, seed=s)
        for dh in SCALING_DH
        for scaled in (True, False)
        for s in seeds
    ]
