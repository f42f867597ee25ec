"""A new decoder or kernel is one file: registered inside this test, a toy decoder is picked up
by the tuning and quality sweeps, trains in a sweep cell, joins the training-throughput benchmark
and appears in the report with a colour of its own; a toy kernel joins the timing and memory
cases with its own cost model (FLOPs, predicted peak) and appears in the kernel tables with its
own colour. No other edit anywhere.

Each toy is registered by a fixture and removed afterwards, so no other test module's
parametrization over the registry ever sees it. Shapes: B batch, H heads, T target length (or
queries), S keys, Dh head width, D width, V vocab.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from benchmarks.report.build import build_report
from benchmarks.report.plots import SPARE_COLORS, _palette
from benchmarks.sweeps.cell import Cell, run_cell
from benchmarks.sweeps.profiles import QUICK
from benchmarks.sweeps.quality import quality_cells
from benchmarks.sweeps.tuning import tuning_cells
from benchmarks.timing import cases as timing
from benchmarks.timing.bench_training import train_cases
from models.attention.base import AttentionKernel
from models.base import Decoder, DecoderOutput, EncoderOutput, State
from models.registry import list_decoders, register_decoder, register_kernel, unregister

TOY = "toy_bag"
TOY_KERNEL = "toy_softmax"


@pytest.fixture
def toy_decoder() -> Iterator[str]:
    """A context-vector decoder with no recurrence: logits = W [embed(y_{t-1}); summary]."""

    @register_decoder(TOY)
    class BagDecoder(Decoder):
        default_lr = 1e-2  # declared beside the code, like every decoder's

        def __init__(self, vocab_size: int, d_model: int = 16, dropout: float = 0.0) -> None:
            super().__init__()
            self.vocab_size, self.d_model = vocab_size, d_model
            self.embed = nn.Embedding(vocab_size, d_model)
            self.out = nn.Linear(2 * d_model, vocab_size)

        def _logits(self, summary: Tensor, tokens: Tensor) -> Tensor:
            x = self.embed(tokens)  # (B, T, D)
            s = summary.unsqueeze(1).expand_as(x)  # (B, T, D)
            return self.out(torch.cat([x, s], dim=-1))  # (B, T, V)

        def forward(
            self, enc: EncoderOutput, tokens: Tensor, need_attn: bool = True
        ) -> DecoderOutput:
            return DecoderOutput(self._logits(enc.summary, tokens), None)

        def init_state(self, enc: EncoderOutput) -> State:
            return {"summary": enc.summary}

        def step(self, state: State, token: Tensor) -> tuple[Tensor, State, Tensor | None]:
            return self._logits(state["summary"], token[:, None])[:, 0], state, None

    try:
        yield TOY
    finally:
        unregister("decoder", TOY)


def test_extension_toy_decoder_joins_every_sweep(toy_decoder: str) -> None:
    assert toy_decoder in list_decoders()
    tuning = [c for c in tuning_cells(QUICK) if c.decoder == toy_decoder]
    assert [c.train["lr"] for c in tuning] == [1e-2 * f for f in QUICK.tune_lr_factors]
    assert toy_decoder in {c.decoder for c in quality_cells(QUICK)}
    assert (toy_decoder, 128) in train_cases("quick")


def test_extension_toy_decoder_trains_in_a_cell(toy_decoder: str) -> None:
    args = {"length": 3, "seed": 0, "n_train": 32, "n_val": 8, "n_test": 8, "num_symbols": 5}
    train = {"d_model": 16, "batch_size": 8, "max_steps": 4, "warmup_steps": 1, "eval_every": 2,
             "meteor": False, "lr": 1e-2}  # fmt: skip
    row = run_cell(Cell("test", "reverse", args, toy_decoder, train), "cpu", threads=1)
    assert row["status"] == "ok", row["error"]
    assert row["decoder"] == toy_decoder and row["stop_reason"] == "cap" and row["steps"] == 4


def test_extension_toy_decoder_in_the_report(toy_decoder: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    cfg = json.dumps({"d_model": 16, "max_steps": 4, "batch_size": 8, "lr": 0.01})
    rows = [
        {"cell_id": f"{d}{L}", "sweep": "quality", "task": "reverse", "length": L, "decoder": d,
         "seed": 0, "train_cfg": cfg, "status": "ok", "exact_match": em, "token_acc": em,
         "stop_reason": "plateau", "steps": 4, "tokens": 100, "params": 10, "history": "[]"}
        for d, em in ((toy_decoder, 0.1), ("rnn", 0.2)) for L in (2, 4)
    ]  # fmt: skip
    with (raw / "quality_cpu.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    build_report(raw, tmp_path / "out")
    table = (tmp_path / "out" / "tables" / "quality_reverse_cpu.md").read_text()
    assert f"| {toy_decoder} | 2 |" in table and f"| {toy_decoder} | 4 |" in table
    import pandas as pd

    palette = _palette(pd.DataFrame({"decoder": [toy_decoder, "rnn"]}), "decoder")
    assert palette == {"rnn": "C0", toy_decoder: SPARE_COLORS[0]}


@pytest.fixture
def toy_kernel() -> Iterator[str]:
    """Explicit softmax(QK^T)V without the scale, with a cost model of its own."""

    @register_kernel(TOY_KERNEL)
    class ToyKernel(AttentionKernel):
        color = "C9"

        @classmethod
        def flops(cls, b: int, h: int, t: int, s: int, dh: int, causal: bool,
                  backward: bool) -> float:  # fmt: skip
            return 4.0 * b * h * t * s * dh * (3.0 if backward else 1.0)  # no causal saving

        @classmethod
        def peak_bytes(cls, b: int, h: int, t: int, s: int, dh: int, causal: bool,
                       backward: bool, dtype_bytes: int = 4, **cfg: object) -> int:  # fmt: skip
            return (3 if backward else 2) * b * h * t * s * dtype_bytes  # scores and weights

        def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                    causal: bool = False, need_weights: bool = False):  # fmt: skip
            weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # (B, H, T, S)
            return weights @ v, (weights if need_weights else None)  # (B, H, T, Dh)

    try:
        yield TOY_KERNEL
    finally:
        unregister("kernel", TOY_KERNEL)


def test_extension_toy_kernel_joins_the_timing_and_memory_cases(toy_kernel: str) -> None:
    cases = [c for c in timing.kernel_cases(timing.QUICK) if c.kernel == toy_kernel]
    assert {(c.n, c.causal, c.mode) for c in cases} == {
        (c.n, c.causal, c.mode) for c in timing.kernel_cases(timing.QUICK) if c.kernel == "sdpa"
    }
    assert toy_kernel in {c.kernel for c in timing.memory_cases(timing.QUICK)}
    case = next(c for c in cases if c.mode == "fwd_bwd")
    assert timing.attention_flops(case) == 3 * 4.0 * case.b * case.h * case.n**2 * case.dh
    assert timing.predict_peak_bytes(case) == 3 * case.b * case.h * case.n**2 * 4
    assert timing.skip_reason(case, timing.QUICK, torch.device("cpu"), 4) is None
    call = timing.build_call(case, torch.device("cpu"), torch.float32, seed=0)
    call()  # it runs, backward included


def test_extension_toy_kernel_in_the_kernel_report(toy_kernel: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    info = {"kind": "kernel", "n": 128, "b": 4, "h": 2, "dh": 16, "mode": "fwd", "causal": False,
            "tokens": 512, "flops": 1e6, "query_key_pairs": 131072, "device": "cpu"}  # fmt: skip
    benches = [{"name": f"test_kernel[{k}]", "extra_info": info | {"kernel": k},
                "stats": {"median": t, "iqr": 0.0, "rounds": 3}}
               for k, t in ((toy_kernel, 0.002), ("sdpa", 0.001))]  # fmt: skip
    (raw / "kernels_cpu.json").write_text(json.dumps({"benchmarks": benches}))
    build_report(raw, tmp_path / "out")
    table = (tmp_path / "out" / "tables" / "kernels_cpu.md").read_text()
    assert f"| {toy_kernel} | fwd | False | 128 |" in table
    import pandas as pd

    palette = _palette(pd.DataFrame({"kernel": [toy_kernel, "sdpa"]}), "kernel")
    assert palette == {"sdpa": "C1", toy_kernel: "C9"}
