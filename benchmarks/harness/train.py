"""The shared training harness: one loop for every decoder, so the decoder is the only variable.

Cross-entropy over non-PAD tokens (optional label smoothing), AdamW, gradient-norm clipping,
linear warm-up then cosine decay, teacher forcing, periodic greedy evaluation with early stopping
on a validation metric, atomic checkpoints and resume, bf16 autocast on CUDA, tqdm progress.
Shapes: B batch, T target length, V vocab.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmarks.harness.batching import Batch, bucket_batches, collate
from benchmarks.harness.checkpoint import check_compatible, load_checkpoint, load_state, save_checkpoint
from benchmarks.timing.devices import resolve_device, synchronize
from benchmarks.harness.evaluate import evaluate
from benchmarks.tasks.base import TaskData
from models import create_decoder, create_encoder
from models.base import PAD
from models.seq2seq import Seq2Seq


@dataclass
class TrainConfig:
    decoder: str = "rnn_attn"  # registry name: rnn | rnn_attn | transformer
    decoder_cfg: dict[str, Any] = field(default_factory=dict)  # decoder options (cell, kernel...)
    d_model: int = 128  # width of encoder memory and decoder
    dropout: float = 0.0
    batch_size: int = 64
    max_steps: int = 1000  # the training budget, equal across decoders
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10 % of lr
    clip_norm: float = 1.0  # gradient-norm clipping
    label_smoothing: float = 0.0
    eval_every: int = 250  # steps between greedy validation passes
    patience: int = 0  # stop after this many evaluations without improvement (0 = never)
    select_metric: str = "token_accuracy"  # validation metric for early stopping / best weights
    beam_size: int = 1  # test-time decoding (1 = greedy)
    meteor: bool = True  # METEOR starts a JVM per evaluation; off for fast sweeps
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | mps | auto
    checkpoint_dir: str | None = None  # where last.pt is written; a run there resumes from it


@dataclass
class TrainResult:
    config: dict[str, Any]
    params: int
    steps: int
    train_s: float  # wall time of training steps only (evaluation excluded)
    tokens_per_s: float  # teacher-forced target tokens per training second
    resumed_from: int  # step the run resumed from (0 = fresh)
    stopped_early: bool
    history: list[dict[str, float]]  # one row per evaluation: step, train_loss, val metrics
    val: dict[str, Any]
    test: dict[str, Any]
    model: Seq2Seq | None = field(default=None, repr=False)  # best weights, for analyses


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(task: TaskData, cfg: TrainConfig) -> Seq2Seq:
    encoder = create_encoder(task.encoder, d_model=cfg.d_model, **task.encoder_cfg)
    decoder = create_decoder(
        cfg.decoder,
        vocab_size=len(task.tgt_vocab),
        d_model=cfg.d_model,
        dropout=cfg.dropout,
        **cfg.decoder_cfg,
    )
    return Seq2Seq(encoder, decoder)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at `total` (Loshchilov & Hutter 2017)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy over non-PAD targets: logits (B,T,V), targets (B,T)."""
    return F.cross_entropy(
        logits.float().transpose(1, 2), targets, ignore_index=PAD, label_smoothing=smoothing
    )


def training_batches(task: TaskData, cfg: TrainConfig, start_step: int) -> Iterator[Batch]:
    """Length-bucketed batches, reshuffled each epoch from (seed, epoch): a resumed run sees the
    same order as an uninterrupted one."""
    step, epoch = 0, 0
    while True:
        for idx in bucket_batches(
            task.train, cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch
        ):
            if step >= start_step:
                yield collate([task.train[i] for i in idx], task.source_kind, idx)
            step += 1
        epoch += 1


def _autocast(device: torch.device) -> Any:
    # bf16 autocast on CUDA only: CPU autocast is slower than fp32 for these small models
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def train(
    task: TaskData,
    cfg: TrainConfig,
    progress: bool = False,
    task_args: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one model on `task` and evaluate it on val and test.

    `task_args` (the `load_task` arguments) go into the checkpoint so `caption` can rebuild the
    task; without them the checkpoint still resumes training.
    """
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    model = build_model(task, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps)
    )
    vocab = task.tgt_vocab.idx_to_word
    ckpt_path = Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir else None
    state = {"step": 0, "train_s": 0.0, "tokens": 0, "history": [], "best": None, "bad_evals": 0}
    best_weights = None
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_compatible(ckpt, cfg.decoder, vocab, ckpt_path)
        load_state(model, ckpt["model"], ckpt_path)
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = ckpt["progress"]
        best_weights = ckpt.get("best_model")
        torch.set_rng_state(ckpt["rng"])
    resumed_from = state["step"]
    batches = training_batches(task, cfg, state["step"])
    bar = tqdm(total=cfg.max_steps, initial=state["step"], disable=not progress, desc=cfg.decoder)
    stopped_early, running = False, []
    while state["step"] < cfg.max_steps and not stopped_early:
        model.train()
        batch = next(batches).to(device)
        t0 = time.perf_counter()
        with _autocast(device):
            logits = model(batch.source, batch.source_mask, batch.tokens_in).logits  # (B, T, V)
        loss = sequence_loss(logits, batch.tokens_out, cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss {loss.item()} at step {state['step']}"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        sched.step()
        synchronize(device)
        state["train_s"] += time.perf_counter() - t0
        state["tokens"] += batch.num_target_tokens
        state["step"] += 1
        running.append(loss.item())
        bar.update(1)
        if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
            stopped_early = _validate(model, task, cfg, device, state, running)
            running = []
            if state["bad_evals"] == 0:
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.set_postfix(
                loss=f"{state['history'][-1]['train_loss']:.3f}",
                val=f"{state['history'][-1][cfg.select_metric]:.3f}",
            )
            if ckpt_path is not None:
                save_checkpoint(
                    ckpt_path,
                    {
                        "decoder": cfg.decoder,
                        "vocab": vocab,
                        "config": asdict(cfg),
                        "task": {"name": task.name, "args": task_args},
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "progress": state,
                        "best_model": best_weights,
                        "rng": torch.get_rng_state(),
                    },
                )
    bar.close()
    if best_weights is not None:
        model.load_state_dict(best_weights)
    # the best weights were already evaluated on val in _validate: reuse, don't decode again
    val = state.get("best_val") or evaluate(model, task, task.val, device, 1, caption_metrics=False)
    test = evaluate(model, task, task.test, device, cfg.beam_size, meteor=cfg.meteor)
    return TrainResult(
        config=asdict(cfg),
        params=count_params(model),
        steps=state["step"],
        train_s=state["train_s"],
        tokens_per_s=state["tokens"] / max(state["train_s"], 1e-9),
        resumed_from=resumed_from,
        stopped_early=stopped_early,
        history=state["history"],
        val=val,
        test=test,
        model=model,
    )


def _validate(
    model: Seq2Seq,
    task: TaskData,
    cfg: TrainConfig,
    device: torch.device,
    state: dict[str, Any],
    running: list[float],
) -> bool:
    """Greedy validation pass; updates best/bad_evals; returns True when patience runs out."""
    metrics = evaluate(model, task, task.val, device, 1, caption_metrics=False)
    row = {"step": state["step"], "train_loss": float(np.mean(running)) if running else math.nan}
    row.update(metrics)
    state["history"].append(row)
    score = metrics[cfg.select_metric]
    if state["best"] is None or score > state["best"]:
        state["best"], state["bad_evals"] = score, 0
        state["best_val"] = metrics  # the val metrics of the weights train() will return
    else:
        state["bad_evals"] += 1
    return cfg.patience > 0 and state["bad_evals"] >= cfg.patience
