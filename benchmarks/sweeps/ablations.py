"""`python -m benchmarks ablations`: the seed's claims, each measured.

Every cell trains with the quality sweep's budget and stopping rule (a capped cell is marked in
the report), with its decoder's tuned learning rate and warm-up.
1. Context-vector bottleneck -> the quality sweep itself (benchmarks/sweeps/quality.py).
2. Alignment: heat maps + the fraction of output tokens whose attention argmax falls on the input
   position that produced them: recorded by every digits and reverse quality cell.
3. sqrt(D) scaling: softmax entropy and logit-gradient norm at initialisation across Dh (no
   training, `scaling_init`), plus the training curve of an unscaled vs scaled Transformer.
4. Positional encoding: sinusoidal vs learned vs none on reverse and sort.
5. Causal mask: trained without it, teacher-forced accuracy vs free-running (greedy) accuracy.
6. Alignment function for rnn_attn: additive vs dot vs general vs scaled_dot.
Shapes: B batch, H heads, T queries, S keys, Dh head width.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.profiles import Profile
from benchmarks.sweeps.tuning import Hparams, common_budget, hparams_for
from models.registry import list_decoders

SCALING_DH = (16, 32, 64, 128, 256, 512, 1024)


def _cell(
    profile: Profile,
    hparams: dict[str, Hparams],
    sweep: str,
    task: str,
    length: int,
    decoder: str,
    label: str,
    decoder_cfg: dict[str, Any],
    **extra: Any,
) -> Cell:
    """One ablation run: the quality sweep's budget and stopping rule, seed 0."""
    hp = hparams[decoder]
    train = common_budget(profile, seed=0) | {"decoder_cfg": decoder_cfg}
    train |= {"lr": hp["lr"], "warmup_steps": hp["warmup_steps"]}
    args = {"length": length, "seed": 0, **profile.task_sizes(task)}
    extra["hparams"] = hp["hparams"]
    return Cell(sweep, task, args, decoder, train, label=label, length=length, extra=extra)


def ablation_cells(profile: Profile, tuning_csv: Path | None = None) -> list[Cell]:
    """Every training run the ablations need, one seed each (the quality sweep has several)."""
    hp = hparams_for(list_decoders(), tuning_csv, profile)
    short, mid = profile.ablation_lengths

    def cell(sweep: str, task: str, length: int, decoder: str, label: str, **cfg: Any) -> Cell:
        return _cell(profile, hp, sweep, task, length, decoder, label, cfg)

    # Default configurations (sinusoidal positions on reverse, causal, additive alignment) and
    # the alignment statistic come from the quality sweep's seed-0 cells (report/ablations.py).
    cells = [
        cell("positional", "reverse", short, "transformer", f"positional={pos}", positional=pos)
        for pos in ("learned", "none")
    ]
    cells += [
        cell("positional", "sort", short, "transformer", f"positional={pos}", positional=pos)
        for pos in ("sinusoidal", "learned", "none")
    ]
    cells.append(cell("causal", "reverse", short, "transformer", "causal=False", causal=False))
    cells += [
        cell("alignment_fn", "reverse", mid, "rnn_attn", f"alignment={fn}", alignment=fn)
        for fn in ("dot", "general", "scaled_dot")
    ]
    # one head so Dh = d_model: the unscaled logits grow by sqrt(Dh) = 8x at d_model 64
    cells += [
        cell("scaling", "reverse", short, "transformer", f"scaled={scaled}",
             kernel="dot", kernel_cfg={"scaled": scaled}, num_heads=1)
        for scaled in (True, False)
    ]  # fmt: skip
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
