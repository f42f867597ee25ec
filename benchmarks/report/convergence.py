"""Report section on the cost side of quality: learning curves and tokens to 95 % exact match.

Learning curves are validation exact match against training target tokens, per decoder, at the
longest length of each task, mean with a ±1 std band over seeds. A seed that stopped early (its
target reached) keeps its last value to the end of the longest seed's run, so the mean does not
drop when a fast seed stops. Tokens to 95 % is the training-token count at the first
evaluation whose validation exact match reached 0.95 (blank: never), per decoder and length.
Capped cells are marked wherever they appear: named under their curves, a `stops` column in the
tokens-to-95 table, and left out of its plot and its sentence.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt, numeric, parse_json, stop_counts


def curves(sub: pd.DataFrame) -> pd.DataFrame:
    """Long rows (decoder, seed, tokens, exact_match) from each cell's `history`, each seed's
    last value carried forward to the last evaluation any seed of its decoder reached."""
    rows = [
        {"decoder": r.decoder, "seed": r.seed, "step": h["step"], "tokens": h.get("tokens"),
         "exact_match": h.get("exact_match")}
        for r in sub.itertuples() for h in parse_json(r.history, [])
    ]  # fmt: skip
    long = numeric(pd.DataFrame(rows), ["step", "tokens", "exact_match"]).dropna()
    if long.empty:
        return long
    filled = []
    for _, g in long.groupby("decoder", sort=True):
        steps = sorted(g["step"].unique())
        grid = g.pivot_table(index="step", columns="seed", values=["tokens", "exact_match"])
        grid = grid.reindex(steps)
        per_step = (g["tokens"] / g["step"]).median()  # fixed-length tasks: exactly B * (L + 1)
        for seed in grid["exact_match"].columns:
            filled.append(
                pd.DataFrame(
                    {
                        "decoder": g["decoder"].iloc[0],
                        "seed": seed,
                        "step": steps,
                        "tokens": [s * per_step for s in steps],
                        "exact_match": grid["exact_match"][seed].ffill().to_numpy(),
                    }
                )  # fmt: skip
            )
    return pd.concat(filled, ignore_index=True)


def convergence(rep: Report, df: pd.DataFrame, dev: str) -> None:
    if df.empty:
        return
    rep.h(3, f"Learning curves and tokens to 95 % ({dev})")
    for task, sub in sorted(df.groupby("task")):
        longest = int(sub["length"].max())
        at = sub[sub["length"] == longest]
        long = curves(at)
        if long.empty:
            continue
        title = f"{task} L={longest}: validation exact match vs training tokens ({dev})"
        capped = _capped(at)
        if capped:  # a curve that ends at the cap shows the budget running out
            title += f"\nstopped by the step cap, a budget and not a result: {capped}"
            rep.say(f"{task} L={longest}: the curves of {capped} end at the step cap.")
        fig = plots.lines(long, "tokens", [("exact_match", "val exact match")], "decoder", title)
        rep.figure(f"curves_{task}_{dev}", fig)
    t95 = df.groupby(["task", "decoder", "length"], sort=True).agg(
        seeds=("seed", "count"),
        stops=("stop_reason", stop_counts),
        reached_95=("tokens_to_95", lambda s: int(s.notna().sum())),
        tokens_to_95=("tokens_to_95", "mean"),
        tokens=("tokens", "mean"),
        train_s=("train_s", "mean"),
        converged=("converged", "all"),
    )
    t95 = t95.reset_index()
    # the plot and the sentence use converged points only; the table shows every point, stops
    reached = t95[(t95["reached_95"] > 0) & t95["converged"]]
    t95 = t95.drop(columns="converged")
    if not reached.empty:
        rep.figure(
            f"tokens_to_95_{dev}",
            plots.lines(
                reached, "length", [("tokens_to_95", "tokens to 95 % EM")],
                "decoder", f"training tokens to 95 % validation exact match ({dev})",
                style="task", logx=True, logy=True,
            ),
        )  # fmt: skip
    rep.say(
        "Sample efficiency: training target tokens until validation exact match first reached "
        "95 % (mean over the seeds that reached it; `reached_95` counts them), beside the tokens "
        "and seconds each cell trained in all; `stops` says how the seeds ended. The plot and "
        "this sentence use points whose seeds all converged. " + _cheapest(reached)
    )
    rep.table(f"tokens_to_95_{dev}", t95, f"Tokens to 95 % exact match ({dev})")


def _capped(cells: pd.DataFrame) -> str:
    """'rnn (cap×2)': the decoders with a seed stopped by the step cap among `cells`."""
    stops = cells[~cells["converged"]].groupby("decoder", sort=True)["stop_reason"]
    return ", ".join(f"{decoder} ({stop_counts(s)})" for decoder, s in stops)


def _cheapest(reached: pd.DataFrame) -> str:
    """Per task, at its longest length where several decoders reached 95 %: who needed fewest."""
    parts = []
    for task, g in reached.groupby("task", sort=True):
        lengths = [L for L, h in g.groupby("length") if len(h) > 1]
        if not lengths:
            continue
        h = g[g["length"] == max(lengths)].sort_values("tokens_to_95")
        parts.append(
            f"{task} L={int(max(lengths))}: "
            + ", ".join(f"{r.decoder} {fmt(r.tokens_to_95)}" for r in h.itertuples())
        )
    return (
        ("Tokens to 95 % at the longest length two decoders reached: " + "; ".join(parts) + ".")
        if parts
        else ""
    )
