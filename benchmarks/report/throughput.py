"""Report section on training speed: the training-step benchmark across target lengths, and the
training-throughput comparison at the quality sweep's shapes (bench_training.py): every decoder
beside PyTorch's nn.TransformerDecoder, one thread, one run, with the ratios the comparison is for.
Shapes: B batch, T target length, D width.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt

RATIOS = (  # (numerator, denominator, why the pair is compared)
    ("rnn_attn", "rnn", "attention's cost over the fused vanilla GRU"),
    ("transformer", "nn.TransformerDecoder", "our Transformer over PyTorch's, same shape"),
)


def training(rep: Report, bench: pd.DataFrame, dev: str) -> None:
    _throughput(rep, bench[bench["kind"] == "train_throughput"], dev)
    _train(rep, bench[bench["kind"] == "train_step"], dev)


def _throughput(rep: Report, d: pd.DataFrame, dev: str) -> None:
    if d.empty:
        return
    rep.h(3, f"Training throughput at the sweep's shapes ({dev})")
    d = d.assign(tokens_per_s=d["tokens"] / d["median_s"])
    table = d.pivot_table(index="decoder", columns="d_model", values="tokens_per_s")
    table.columns = [f"d_model={int(c)} tokens/s" for c in table.columns]
    first = d.iloc[0]
    parts = []
    for num, den, why in RATIOS:
        for width in sorted(d["d_model"].unique()):
            at = d[d["d_model"] == width].set_index("decoder")["tokens_per_s"]
            if num in at and den in at:
                parts.append(
                    f"{num}/{den} = {at[num] / at[den]:.2f} at d_model {int(width)} ({why})"
                )
    rep.say(
        f"One AdamW training step, teacher-forced, B={int(first['batch'])}, T={int(first['t'])}, "
        f"S={int(first['mem_len'])}, V={int(first['vocab'])}, on {int(first['threads'])} thread, "
        "all decoders in the same run (pytest-benchmark medians). "
        + ("Ratios: " + "; ".join(parts) + "." if parts else "")
    )
    rep.table(f"train_throughput_{dev}", table.reset_index(), f"Training tokens/s ({dev})")


def _train(rep: Report, d: pd.DataFrame, dev: str) -> None:
    if d.empty:
        return
    rep.h(3, f"Training-step throughput ({dev})")
    d = d.assign(tokens_per_s=d["tokens"] / d["median_s"])
    top = d[d["t"] == d["t"].max()].sort_values("decoder")
    rep.say(
        f"Teacher-forced forward + backward + AdamW at T={int(d['t'].max())}: "
        + ", ".join(f"{r.decoder} {fmt(r.tokens_per_s)} tokens/s" for r in top.itertuples())
        + "."
    )
    rep.figure(
        f"train_step_{dev}",
        plots.lines(
            d, "t", [("tokens_per_s", "tokens/s")], "decoder", f"training step ({dev})", logx=True
        ),
    )
    table = d.pivot_table(index="decoder", columns="t", values="tokens_per_s", aggfunc="median")
    table.columns = [f"T={int(t)} tokens/s" for t in table.columns]
    rep.table(f"train_step_{dev}", table.reset_index(), f"Training-step tokens/s ({dev})")
