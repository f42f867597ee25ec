"""The shared training harness: one loop for every decoder, so the decoder is the only variable.

Cross-entropy over non-PAD tokens (optional label smoothing), AdamW, gradient-norm clipping,
linear warm-up then cosine decay, teacher forcing, periodic greedy evaluation with the stopping
rule of config.py (target, plateau or cap), atomic checkpoints and a resume that reproduces an
uninterrupted run, bf16 autocast on CUDA (models/precision.py), tqdm progress.
Shapes: B batch, T target length, V vocab.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmarks.harness.batching import Batch, bucket_batches, collate
from benchmarks.harness.checkpoint import (
    check_compatible,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from benchmarks.harness.config import TrainConfig
from benchmarks.harness.evaluate import evaluate
from benchmarks.harness.step_timer import StepTimer, warm_up
from benchmarks.harness.stopping import tokens_to, validate
from benchmarks.tasks.base import TaskData
from benchmarks.timing.devices import resolve_device
from models import create_decoder, create_encoder
from models.base import PAD
from models.precision import training_autocast
from models.seq2seq import Seq2Seq


@dataclass
class TrainResult:
    config: dict[str, Any]
    params: int
    steps: int
    train_s: float  # wall time of training steps only (evaluation excluded)
    tokens_per_s: float  # teacher-forced target tokens per training second
    resumed_from: int  # step the run resumed from (0 = fresh)
    stop_reason: str  # which rule ended training: target | plateau | cap (see config.py)
    tokens: int  # teacher-forced target tokens trained on
    tokens_to_95: int | None  # tokens at the first evaluation with val exact match >= 0.95
    history: list[dict[str, float]]  # one row per evaluation: step, tokens, loss, val metrics
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


def train(
    task: TaskData,
    cfg: TrainConfig,
    progress: bool = False,
    task_args: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one model on `task` until the stopping rule fires, then evaluate it on val and test.

    `task_args` (the `load_task` arguments) go into the checkpoint so `caption` can rebuild the
    task; without them the checkpoint still resumes training.
    """
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    model = build_model(task, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.decay_steps or cfg.max_steps)
    )
    ckpt_path = Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir else None
    run = _Run(model, opt, sched, task, cfg, ckpt_path, task_args)
    run.resume()
    resumed_from = run.state["step"]
    batches = training_batches(task, cfg, run.state["step"])
    bar = tqdm(total=cfg.max_steps, initial=resumed_from, disable=not progress, desc=cfg.decoder)
    stop, running, timer = run.state.get("stop_reason"), [], StepTimer(device)
    warm = device.type != "cuda"  # CUDA's lazy set-up is kept out of train_s (step_timer.py)
    while stop is None and run.state["step"] < cfg.max_steps:
        batch = next(batches)
        run.state["tokens"] += batch.num_target_tokens  # read on the CPU: no device sync
        batch = batch.to(device)
        if not warm:
            warm_up(model, lambda m, b=batch: _loss(m, b, cfg, device))
            warm = True
        with timer.step():
            running.append(_step(model, opt, sched, batch, cfg, device))
        run.state["step"] += 1
        bar.update(1)
        if run.state["step"] % cfg.eval_every == 0 or run.state["step"] == cfg.max_steps:
            run.state["train_s"] += timer.collect()
            stop = validate(model, task, cfg, device, run.state, finite_losses(running, run.state))
            running = []
            if run.state["improved"]:
                run.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            last = run.state["history"][-1]
            bar.set_postfix(loss=f"{last['train_loss']:.3f}", val=f"{last[cfg.select_metric]:.3f}")
            if stop is None and run.state["step"] >= cfg.max_steps:
                stop = "cap"
            run.state["stop_reason"] = stop
            run.save()
    bar.close()
    if run.best_weights is not None:
        model.load_state_dict(run.best_weights)
    # the best weights were already evaluated on val in validate(): reuse, don't decode again
    val = run.state.get("best_val") or evaluate(
        model, task, task.val, device, 1, caption_metrics=False
    )
    test = evaluate(model, task, task.test, device, cfg.beam_size, meteor=cfg.meteor)
    state = run.state
    return TrainResult(
        config=asdict(cfg),
        params=count_params(model),
        steps=state["step"],
        train_s=state["train_s"],
        tokens_per_s=state["tokens"] / max(state["train_s"], 1e-9),
        resumed_from=resumed_from,
        stop_reason=state.get("stop_reason") or "cap",
        tokens=state["tokens"],
        tokens_to_95=tokens_to(state["history"], "exact_match", 0.95),
        history=state["history"],
        val=val,
        test=test,
        model=model,
    )


def _loss(model: Seq2Seq, batch: Batch, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """The teacher-forced training loss of `batch`, under the harness's autocast."""
    with training_autocast(device):
        out = model(batch.source, batch.source_mask, batch.tokens_in, need_attn=False)
        logits = out.logits  # (B, T, V)
    return sequence_loss(logits, batch.tokens_out, cfg.label_smoothing)


def _step(
    model: Seq2Seq,
    opt: torch.optim.Optimizer,
    sched: Any,
    batch: Batch,
    cfg: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """One teacher-forced AdamW step; returns the loss, left on the device: reading it (or
    checking it is finite) here would be a device sync per step (see `finite_losses`)."""
    model.train()
    loss = _loss(model, batch, cfg, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
    opt.step()
    sched.step()
    return loss.detach()


def finite_losses(running: list[torch.Tensor], state: dict[str, Any]) -> list[float]:
    """The losses of the steps since the last evaluation, read once per evaluation; refuses a
    non-finite one (naming its step) before its weights can be evaluated or checkpointed."""
    losses = torch.stack(running).float().cpu() if running else torch.zeros(0)  # (steps,)
    bad = (~torch.isfinite(losses)).nonzero().flatten()
    if len(bad):
        step = state["step"] - len(losses) + int(bad[0])
        raise FloatingPointError(f"non-finite training loss {float(losses[bad[0]])} at step {step}")
    return losses.tolist()


@dataclass
class _Run:
    """What a checkpoint holds, and the resume that restores it exactly."""

    model: Seq2Seq
    opt: torch.optim.Optimizer
    sched: Any
    task: TaskData
    cfg: TrainConfig
    path: Path | None
    task_args: dict[str, Any] | None
    state: dict[str, Any] = field(
        default_factory=lambda: {
            "step": 0, "train_s": 0.0, "tokens": 0, "history": [], "best_key": None, "bad_evals": 0,
            "stop_reason": None,
        }
    )  # fmt: skip
    best_weights: dict[str, torch.Tensor] | None = None

    def resume(self) -> None:
        if self.path is None or not self.path.exists():
            return
        ckpt = load_checkpoint(self.path)
        check_compatible(ckpt, self.cfg.decoder, self.task.tgt_vocab.idx_to_word, self.path)
        load_state(self.model, ckpt["model"], self.path)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.state = {"stop_reason": None, **ckpt["progress"]}
        if self.state["stop_reason"] == "cap" and self.state["step"] < self.cfg.max_steps:
            self.state["stop_reason"] = None  # the cap was raised: a capped run trains on
        self.best_weights = ckpt.get("best_model")
        torch.set_rng_state(ckpt["rng"])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])  # dropout on the GPU draws from it

    def save(self) -> None:
        if self.path is None:
            return
        save_checkpoint(
            self.path,
            {
                "decoder": self.cfg.decoder,
                "vocab": self.task.tgt_vocab.idx_to_word,
                "config": asdict(self.cfg),
                "task": {"name": self.task.name, "args": self.task_args},
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "progress": self.state,
                "best_model": self.best_weights,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            },
        )
