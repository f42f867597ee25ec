"""Report section for the quality sweep (quality_<device>.csv): quality vs length per task and
decoder, what converged, the budget, and the headline claims.

A cell converged when its stopping rule fired on the validation set: `target` (exact match
reached the profile's target) or `plateau` (token accuracy stopped improving). A `cap` cell ran
out of steps: it measures the budget, not the decoder. Capped cells are shown (hollow markers,
a `stops` column) but no "longest length ready" claim and no headline sentence rests on them.
Rows written before the stopping rule existed carry no `stop_reason`: they stopped at a fixed
step budget, so they count as capped. L is the task's length dial (digits per strip, tokens).
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report import plots
from benchmarks.report.base import Report, fmt, numeric, parse_json, stop_counts, summarise
from benchmarks.report.convergence import convergence
from benchmarks.report.scan import scan

READY = 0.95  # "keeps >= 95 % exact match"
BOTTLENECK = 0.5  # the vanilla decoder "fails" below half exact match
QUALITY_METRICS = "exact_match bleu4 cider meteor token_acc val_loss tokens_per_s train_s".split()
NUMERIC = [
    *QUALITY_METRICS, "length", "seed", "tf_token_acc", "alignment_fraction", "wall_s", "steps",
    "tokens", "tokens_to_95", "params", "val_exact_match", "val_token_acc",
]  # fmt: skip
BUDGET_KEYS = [
    "d_model", "batch_size", "lr", "warmup_steps", "decay_steps", "max_steps", "target", "patience",
]  # fmt: skip
SEQUENCE_PANELS = [("exact_match", "test exact match"), ("token_acc", "test token accuracy")]
TASK_PLOTS = {"digits": [SEQUENCE_PANELS[0], ("bleu4", "BLEU-4"), ("cider", "CIDEr-D")]}


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Finished cells with numeric metrics and `stop_reason` / `converged` filled in."""
    ok = df[df["status"] == "ok"]
    out = numeric(ok.reindex(columns=list(dict.fromkeys([*ok.columns, *NUMERIC]))), NUMERIC)
    stop = out["stop_reason"] if "stop_reason" in out else pd.Series("cap", index=out.index)
    out["stop_reason"] = stop.fillna("cap")
    out["converged"] = out["stop_reason"].isin(["target", "plateau"])
    return out


def longest_ready(df: pd.DataFrame) -> dict[str, str]:
    """Per decoder: the longest L with mean EM >= READY at every tested length up to it, every
    cell converged. A capped length ends the claim (and says so)."""
    out: dict[str, str] = {}
    for dec, g in df.groupby("decoder", sort=True):
        best, why = None, ""
        for length, cells in g.groupby("length", sort=True):
            if not cells["converged"].all():
                why = f" (L={int(length)} capped: not a result)"
                break
            if cells["exact_match"].mean() < READY:
                break
            best = int(length)
        out[dec] = ("none" if best is None else f"L={best}") + why
    return out


def point_table(sub: pd.DataFrame) -> pd.DataFrame:
    """One row per (decoder, length): mean ± std over seeds, how the seeds stopped, cost."""
    table = summarise(sub, ["decoder", "length"], QUALITY_METRICS)
    grouped = sub.groupby(["decoder", "length"], sort=True)
    extra = pd.DataFrame(
        {
            "steps": grouped["steps"].mean(),
            "tokens_to_95": grouped["tokens_to_95"].mean(),
            "reached_95": grouped["tokens_to_95"].agg(lambda s: f"{s.notna().sum()}/{len(s)}"),
            "params": grouped["params"].first(),
        }
    ).reset_index(drop=True)
    return pd.concat([table.reset_index(drop=True), extra], axis=1)


def quality(rep: Report, frames: dict[str, pd.DataFrame]) -> None:
    rep.h(2, "Quality vs length")
    if not frames:
        rep.say(
            "No `quality_<device>.csv` in the raw results: run "
            "`python -m benchmarks tune` then `python -m benchmarks quality`."
        )
        return
    for dev, raw in frames.items():
        df = ok_rows(raw)
        if df.empty:
            rep.say(f"{dev}: no successful quality cell (see Failed cells).")
            continue
        _convergence_summary(rep, df, dev)
        _budget(rep, df, dev)
        tasks = sorted(set(df.loc[df["length"].notna(), "task"]), key=lambda t: (t != "reverse", t))
        ready_rows = [row for task in tasks for row in _task(rep, df[df["task"] == task], dev)]
        if ready_rows:
            caption = f"Longest L with ≥{READY:.0%} mean exact match, converged cells only ({dev})"
            rep.table(f"ready_{dev}", pd.DataFrame(ready_rows), caption)
        convergence(rep, df[df["length"].notna()], dev)
        scan(rep, df[df["task"] == "scan"], dev)


def _convergence_summary(rep: Report, df: pd.DataFrame, dev: str) -> None:
    counts = df["stop_reason"].value_counts()
    capped = df[~df["converged"]]
    rep.say(
        f"{len(df)} cells ({dev}): {int(counts.get('target', 0))} reached the target, "
        f"{int(counts.get('plateau', 0))} stopped on a plateau, {int(counts.get('cap', 0))} "
        "hit the step cap"
        + (
            " ("
            + ", ".join(sorted({f"{r.task} {_dial(r)} {r.decoder}" for r in capped.itertuples()}))
            + "; these measure the budget, not the decoder, and carry no claim below)."
            if len(capped)
            else "; every number below is a converged result."
        )
    )


def _dial(row: object) -> str:
    length = getattr(row, "length", None)
    return f"L={int(length)}" if pd.notna(length) else str(getattr(row, "split", ""))


def _budget(rep: Report, df: pd.DataFrame, dev: str) -> None:
    cfg = pd.DataFrame([parse_json(s, {}) for s in df["train_cfg"]], index=df.index)
    cfg = cfg.reindex(columns=BUDGET_KEYS).assign(
        task=df["task"], decoder=df["decoder"], params=df["params"],
        hparams=df.get("hparams", pd.Series("", index=df.index)),
    )  # fmt: skip
    rows = [
        {"task": task, "decoder": dec, "params": _span(g["params"])}
        | {k: _span(g[k]) for k in BUDGET_KEYS}
        | {"lr_from": ", ".join(sorted(set(g["hparams"].dropna().astype(str)) - {""})) or "–"}
        for (task, dec), g in cfg.groupby(["task", "decoder"], sort=True)
    ]
    shared = ["d_model", "batch_size", "decay_steps", "max_steps", "target"]
    same = cfg.groupby("task")[shared].nunique()
    rep.say(
        "Budget and stopping rule per cell, from each row's `train_cfg`: "
        + (
            "width, batch, schedule horizon (`decay_steps`: cosine to 10 % of the rate, then "
            "the floor until the cap), step cap and target are identical across decoders for "
            "every task; "
            if bool((same <= 1).all().all())
            else "budgets differ across decoders: compare with care; "
        )
        + "each decoder's learning rate and warm-up come from the tuning sweep (`lr_from`)."
    )
    rep.table(f"budget_{dev}", pd.DataFrame(rows), f"Training budget and parameters ({dev})")


def _span(values: pd.Series) -> str:
    """'64', or '16–64' when the value varies."""
    vals = sorted(pd.to_numeric(values, errors="coerce").dropna().unique())
    if not vals:
        return "–"
    return fmt(vals[0]) if len(vals) == 1 else f"{fmt(vals[0])}–{fmt(vals[-1])}"


def _task(rep: Report, sub: pd.DataFrame, dev: str) -> list[dict]:
    """One task's figure, table and reading; returns its longest-ready-length rows."""
    task = sub["task"].iloc[0]
    rep.h(3, f"{task} ({dev})")
    ready = longest_ready(sub)
    rep.say(
        f"Longest length with ≥{READY:.0%} mean exact match at every length up to it (converged "
        "cells only): " + ", ".join(f"{d} {v}" for d, v in ready.items()) + ".",
        *headline(sub),
    )
    title = f"{task}: quality vs length ({dev}, mean ± std over seeds)"
    panels = TASK_PLOTS.get(task, SEQUENCE_PANELS)
    rep.figure(
        f"quality_{task}_{dev}", plots.quality_lines(sub, "length", panels, "decoder", title)
    )
    rep.table(f"quality_{task}_{dev}", point_table(sub), f"{task}: mean ± std over seeds ({dev})")
    return [{"task": task, "decoder": d, "longest_L_ready": v} for d, v in ready.items()]


def headline(sub: pd.DataFrame) -> list[str]:
    """The task's claims, each from converged cells only: attention vs the context vector at the
    longest length where every cell converged, and where the vanilla decoder falls below 50 %."""
    means = sub.groupby(["length", "decoder"]).agg(
        em=("exact_match", "mean"), ok=("converged", "all")
    )
    lengths = [L for L, g in means.groupby(level=0) if bool(g["ok"].all())]
    if not lengths:
        return ["No length has every cell converged: no claim is made for this task."]
    longest = max(lengths)
    at = means.loc[longest]
    out = [
        f"At L={int(longest)}, the longest length where every cell converged, mean exact match is "
        + ", ".join(f"{dec} {fmt(r.em)}" for dec, r in at.iterrows())
        + "."
    ]
    if "rnn" in at.index:
        rnn = means.xs("rnn", level="decoder")
        falls = [L for L, r in rnn.iterrows() if r.em < BOTTLENECK and r.ok]
        if falls:
            stops = sub[(sub["decoder"] == "rnn") & (sub["length"] == falls[0])]["stop_reason"]
            out.append(
                f"The context-vector rnn first falls below {BOTTLENECK:.0%} exact match at "
                f"L={int(falls[0])} ({fmt(rnn.loc[falls[0], 'em'])}; its seeds stopped on "
                f"{stop_counts(stops)}: the drop is the bottleneck, not the budget)."
            )
    return out
