"""Report sections for the ablations (ablations_<device>.csv) and sqrt(Dh) scaling at
initialisation (scaling_init_<device>.csv): each of the seed's claims as a table, a figure and a
computed sentence. One seed per ablation cell; H heads, Dh head width, S memory positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt, numeric, parse_json, summarise
from benchmarks.report.heatmaps import save_heatmaps
from benchmarks.report.quality import ok_rows

BASELINES = {  # ablation -> (decoder, the label its default configuration carries)
    "positional": ("transformer", "positional=sinusoidal"),
    "causal": ("transformer", "causal=True"),
    "alignment_fn": ("rnn_attn", "alignment=additive"),
}


def with_baselines(abl: pd.DataFrame, quality: pd.DataFrame | None) -> pd.DataFrame:
    """Each ablation's default configuration is a quality cell (same task, length, budget and
    stopping rule; seed 0): it is read from the quality sweep instead of being trained twice.
    The alignment statistic comes from every quality cell that recorded it."""
    if quality is None or quality.empty:
        return abl
    parts = [abl]
    seed0 = quality[quality["seed"] == 0]
    for sweep, (decoder, label) in BASELINES.items():
        have = abl[(abl["sweep"] == sweep)]
        for task, length in have[["task", "length"]].drop_duplicates().itertuples(index=False):
            if (
                (have["task"] == task) & (have["length"] == length) & (have["label"] == label)
            ).any():
                continue  # trained as an ablation cell after all
            match = seed0[(seed0["task"] == task) & (seed0["length"] == length)]
            parts.append(match[match["decoder"] == decoder].assign(sweep=sweep, label=label))
    if "alignment_fraction" in quality:
        parts.append(quality[quality["alignment_fraction"].notna()].assign(sweep="alignment"))
    return pd.concat(parts, ignore_index=True)


def ablations(
    rep: Report,
    frames: dict[str, pd.DataFrame],
    init: dict[str, pd.DataFrame],
    quality: dict[str, pd.DataFrame] | None = None,
) -> None:
    rep.h(2, "Ablations")
    if frames:
        rep.say(
            "Each ablation cell trains with the quality sweep's budget and stopping rule; the "
            "`stops` column of every table says how it ended, and a cell stopped by the step "
            "cap measures the budget, not the variant. Each ablation's default configuration "
            "(sinusoidal positions, the causal mask, additive alignment) and the alignment "
            "statistic are read from the quality sweep's seed-0 cells of the same task and "
            "length, not trained twice."
        )
    if not frames:
        rep.say(
            "No `ablations_<device>.csv` in the raw results: run "
            "`python -m benchmarks ablations --profile default --device cpu`."
        )
    for dev, raw in frames.items():
        base = (quality or {}).get(dev)
        df = with_baselines(ok_rows(raw), None if base is None else ok_rows(base))
        for sweep, section in (
            ("alignment", _alignment),
            ("positional", _positional),
            ("causal", _causal),
            ("alignment_fn", _alignment_fn),
            ("scaling", _scaling_curves),
        ):
            sub = df[df["sweep"] == sweep]
            if sub.empty:
                rep.say(f"{dev}: no successful `{sweep}` ablation cell.")
            else:
                section(rep, sub, dev)
    for dev, df in init.items():
        _scaling_init(
            rep,
            numeric(df, ["dh", "n_keys", "entropy_ratio", "grad_norm", "logit_std", "entropy"]),
            dev,
        )


def _best(df: pd.DataFrame, metric: str, by: str = "label") -> str:
    means = df.groupby(by)[metric].mean()
    return f"{means.idxmax()} ({fmt(means.max())})"


def _alignment(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Where attention looks ({dev})")
    table = summarise(df, ["task", "decoder", "length"], ["alignment_fraction", "exact_match"])
    frac = df.groupby(["task", "decoder"])["alignment_fraction"].mean()
    rep.say(
        "Fraction of output tokens whose attention argmax (teacher forcing) lies on the input "
        "position that produced them (chance is about 1/S): "
        + "; ".join(f"{task} {dec} {fmt(v)}" for (task, dec), v in frac.items())
        + "."
    )
    rep.table(f"alignment_{dev}", table, f"Alignment fraction ({dev})")
    for task, g in df.groupby("task", sort=True):
        g = g[(g["length"] == g["length"].max()) & (g["seed"] == g["seed"].min())]
        _heatmap(rep, g.sort_values("decoder"), rep.out / "plots" / f"alignment_{task}_{dev}.png")


def _heatmap(rep: Report, df: pd.DataFrame, path: Path) -> None:
    """One figure per task: the same test example under every decoder (and its image, if any)."""
    panels, image, first = [], None, None
    for r in df.itertuples():
        examples = parse_json(getattr(r, "alignment_examples", None), [])
        ex = next((e for e in examples if first is None or e["id"] == first), None)
        if ex is None:
            continue
        first = ex["id"]
        image = ex.get("image") if image is None else image
        keys = ("attn", "out_words", "in_labels")  # what save_heatmaps draws, (T, S) first
        panels.append({k: ex.get(k) for k in keys} | {"title": f"{r.decoder}: example {first}"})
    if panels:
        rep.image(save_heatmaps(path, panels, None if image is None else np.asarray(image)))


def _positional(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Positional encoding ({dev})")
    rep.say(
        "Best exact match per task: "
        + "; ".join(f"{task} {_best(g, 'exact_match')}" for task, g in df.groupby("task"))
        + "."
    )
    rep.figure(
        f"positional_{dev}",
        plots.bars(
            df, "label", "exact_match", "task", f"positional encoding ({dev})", "exact match"
        ),
    )
    rep.table(
        f"positional_{dev}",
        summarise(df, ["task", "label"], ["exact_match", "token_acc", "tf_token_acc", "val_loss"]),
        f"Positional encoding ({dev})",
    )


def _causal(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Causal mask ({dev})")
    means = df.groupby("label")[["tf_token_acc", "token_acc", "exact_match"]].mean()
    means["gap"] = means["tf_token_acc"] - means["token_acc"]
    rep.say(
        "Teacher-forced token accuracy vs greedy (free-running) token accuracy: "
        + "; ".join(
            f"{label}: {fmt(r.tf_token_acc)} vs {fmt(r.token_acc)} (gap {fmt(r.gap)})"
            for label, r in means.iterrows()
        )
        + ".",
        "Without the mask a position can read the token it must predict, so teacher forcing "
        "looks good while greedy decoding, which has no future tokens, does not.",
    )
    table = summarise(df, ["label"], ["tf_token_acc", "token_acc", "exact_match"])
    rep.table(f"causal_{dev}", table.assign(gap=means["gap"].to_numpy()), f"Causal mask ({dev})")
    long = df.melt(
        id_vars="label", value_vars=["tf_token_acc", "token_acc", "exact_match"], var_name="metric"
    )
    rep.figure(
        f"causal_{dev}",
        plots.bars(long, "label", "value", "metric", f"causal mask ({dev})", "accuracy"),
    )


def _alignment_fn(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Alignment function of rnn_attn ({dev})")
    speed = df.groupby("label")["tokens_per_s"].mean()
    rep.say(
        f"Best exact match: {_best(df, 'exact_match')}; fastest training: "
        f"{speed.idxmax()} ({fmt(speed.max())} tokens/s)."
    )
    rep.figure(
        f"alignment_fn_{dev}",
        plots.bars(
            df, "label", "exact_match", "task", f"alignment function ({dev})", "exact match"
        ),
    )
    rep.table(
        f"alignment_fn_{dev}",
        summarise(
            df,
            ["task", "length", "label"],
            ["exact_match", "token_acc", "val_loss", "tokens_per_s", "train_s"],
        ),
        f"Alignment function ({dev})",
    )


def _scaling_curves(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Scaled vs unscaled dot product: training curves ({dev})")
    rows = [
        h | {"label": r.label, "seed": r.seed}
        for r in df.itertuples()
        for h in parse_json(r.history, [])
    ]
    curves = numeric(pd.DataFrame(rows), ["step", "exact_match", "train_loss"])
    rep.say(
        "Final exact match: "
        + "; ".join(
            f"{label} {fmt(v)}" for label, v in df.groupby("label")["exact_match"].mean().items()
        )
        + "."
    )
    if not curves.empty and "step" in curves:
        rep.figure(
            f"scaling_curves_{dev}",
            plots.lines(
                curves,
                "step",
                [("exact_match", "validation exact match"), ("train_loss", "training loss")],
                "label",
                f"sqrt(Dh) scaling during training ({dev})",
            ),
        )
    rep.table(
        f"scaling_curves_{dev}",
        summarise(df, ["task", "label"], ["exact_match", "token_acc", "val_loss", "train_s"]),
        f"Scaling ablation ({dev})",
    )


def _scaling_init(rep: Report, df: pd.DataFrame, dev: str) -> None:
    rep.h(3, f"Scaled vs unscaled dot product at initialisation ({dev})")
    if df.empty:
        rep.say(f"`scaling_init_{dev}.csv` has no rows.")
        return
    df = df.assign(scaled=df["scaled"].astype(str))
    top = df[df["dh"] == df["dh"].max()].groupby("scaled")[["entropy_ratio", "grad_norm"]].mean()
    rep.say(
        f"At Dh={int(df['dh'].max())} the softmax keeps "
        + " and ".join(
            f"{fmt(r.entropy_ratio)} of the maximum entropy with gradient norm {fmt(r.grad_norm)} "
            f"({'scaled' if s == 'True' else 'unscaled'})"
            for s, r in top.iterrows()
        )
        + "."
    )
    rep.figure(
        f"scaling_init_{dev}",
        plots.lines(
            df,
            "dh",
            [("entropy_ratio", "entropy / log(n_keys)"), ("grad_norm", "‖∂L/∂logits‖")],
            "scaled",
            f"softmax at initialisation ({dev})",
            logx=True,
            logy=True,
        ),
    )
    rep.table(
        f"scaling_init_{dev}",
        summarise(df, ["dh", "scaled"], ["entropy_ratio", "entropy", "logit_std", "grad_norm"]),
        f"Scaling at init ({dev})",
    )
