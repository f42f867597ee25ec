"""Figures of the report (seaborn on matplotlib's Agg backend), built from tidy DataFrames.

Every builder returns a Figure and `save_figure` writes it: fixed size and dpi, no Software tag
and no timestamp in the PNG, hue levels sorted, so the same data gives the same bytes. Lines over
seeds are drawn as the mean with a ±1 std band (`errorbar="sd"`: no bootstrap, no randomness).
Attention heat maps are `benchmarks.heatmaps.save_heatmaps`, not redrawn here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter  # noqa: E402

UNIT_INTERVAL = {"exact_match", "token_acc", "tf_token_acc", "bleu4", "entropy_ratio"}  # in [0, 1]
DPI = 100
PANEL = (4.6, 3.4)  # inches per subplot
SPARE_COLORS = tuple(f"C{i}" for i in range(5, 10))  # for names that declare no colour


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a byte-deterministic PNG and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _order(df: pd.DataFrame, col: str | None) -> list | None:
    return None if col is None else sorted(df[col].dropna().unique(), key=str)


def registry_color(name: str) -> str | None:
    """The `color` a decoder or kernel declares beside its code (models/), if it is one."""
    from models.registry import registered

    for kind in ("decoder", "kernel"):
        factory = registered(kind, name)
        if factory is not None:
            return getattr(factory, "color", None)
    return None


def _palette(df: pd.DataFrame, col: str | None) -> dict | None:
    """Registry names keep their declared colour in every figure, whichever of them a figure
    shows; a name with none (a new decoder, the nn.TransformerDecoder baseline) takes a spare
    colour by its sorted position. None (seaborn's own) when the levels are not registry names."""
    levels = _order(df, col) or []
    declared = {v: registry_color(str(v)) for v in levels}
    if not levels or not any(declared.values()):
        return None
    spare = iter(c for c in SPARE_COLORS if c not in declared.values())
    return {v: declared[v] or next(spare) for v in levels}


def _axes(n: int, ncols: int | None = None, nrows: int = 1) -> tuple[Figure, list[plt.Axes]]:
    ncols = ncols or n
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(PANEL[0] * ncols, PANEL[1] * nrows),
        squeeze=False,
        layout="constrained",
    )
    return fig, list(axes.ravel())


def _scale(ax: plt.Axes, logx: bool, logy: bool, base: int = 2, xs: list | None = None) -> None:
    """Log axes with plain-number labels; ticks at the measured x values when there are few."""
    if logx:
        ax.set_xscale("log", base=base)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(1.5, 0.5)))
    if xs is not None and 0 < len(xs) <= 12:
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        if logx:  # the same x range on every panel, data or not
            ax.set_xlim(min(xs) / 1.2, max(xs) * 1.2)


def _hue(df: pd.DataFrame, hue: str | None, style: str | None = None) -> dict:
    """seaborn's hue/style keywords with sorted levels and the fixed registry colours."""
    kw = {"hue": hue, "hue_order": _order(df, hue), "palette": _palette(df, hue)}
    return kw | ({"style": style, "style_order": _order(df, style)} if style else {})


def _one_legend(fig: Figure, axes: list[plt.Axes], title: str | None = None) -> None:
    """Every panel's legend entries merged into one legend right of the panels."""
    entries: dict[str, Any] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        entries |= {lab: h for h, lab in zip(handles, labels, strict=True) if lab not in entries}
        if ax.get_legend():
            ax.get_legend().remove()
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside right upper", fontsize=8,
                   title=title, title_fontsize=8)  # fmt: skip


def lines(
    df: pd.DataFrame,
    x: str,
    ys: list[tuple[str, str]],
    hue: str,
    title: str,
    style: str | None = None,
    logx: bool = False,
    logy: bool = False,
) -> Figure:
    """One panel per (column, axis label) in `ys`, one line per `hue` level, mean ± std band."""
    fig, axes = _axes(len(ys))
    for ax, (col, label) in zip(axes, ys, strict=True):
        sub = df[df[col].notna()]
        sns.lineplot(data=sub, x=x, y=col, marker="o", errorbar="sd", ax=ax, **_hue(df, hue, style))
        _scale(ax, logx, logy, 2 if logx and not logy else 10, sorted(sub[x].unique()))
        ax.grid(True, alpha=0.3)
        ax.set_ylabel(label)
        if col in UNIT_INTERVAL and not logy:  # the whole scale: 0.02 vs 0.04 is not a gap
            ax.set_ylim(-0.03, 1.03)
    _one_legend(fig, axes, None if style else hue)  # with a style, seaborn titles its entries
    fig.suptitle(title)
    return fig


def facets(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    row: str,
    col: str,
    title: str,
    ylabel: str,
    hline: tuple[float, str] | None = None,
) -> Figure:
    """Log-log grid: one panel per (row, col) level pair; `hline` = (value, label), e.g. a peak."""
    rows, cols = _order(df, row), _order(df, col)
    fig, axes = _axes(len(cols) * len(rows), ncols=len(cols), nrows=len(rows))
    for ax, (r, c) in zip(axes, [(r, c) for r in rows for c in cols], strict=True):
        sub = df[(df[row] == r) & (df[col] == c) & df[y].notna()]
        if sub.empty:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes, color="gray")
        else:
            sns.lineplot(data=sub, x=x, y=y, marker="o", errorbar=None, ax=ax, **_hue(df, hue))
        if hline is not None:
            ax.axhline(hline[0], color="black", linestyle="--", linewidth=1, label=hline[1])
        _scale(ax, logx=True, logy=True, base=2, xs=sorted(df[x].unique()))
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{row}={r}, {col}={c}", fontsize=9)
        ax.set_ylabel(ylabel)
    _one_legend(fig, axes, hue)
    fig.suptitle(title)
    return fig


def scatter(df: pd.DataFrame, x: str, y: str, hue: str, style: str, title: str) -> Figure:
    """Points coloured by `hue`, marker by `style`; log x (costs span decades)."""
    fig, (ax,) = _axes(1)
    sns.scatterplot(data=df, x=x, y=y, s=50, ax=ax, **_hue(df, hue, style))
    _scale(ax, logx=True, logy=False, base=10)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    _one_legend(fig, [ax])  # hue and style: seaborn titles its entries
    return fig


def bars(df: pd.DataFrame, x: str, y: str, hue: str | None, title: str, ylabel: str) -> Figure:
    """Mean of `y` per `x` (and `hue`) as bars; one seed per ablation cell, so no error bar."""
    fig, (ax,) = _axes(1)
    sns.barplot(data=df, x=x, y=y, order=_order(df, x), errorbar=None, ax=ax, **_hue(df, hue))
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if df[y].between(0, 1).all():  # accuracies: the whole scale
        ax.set_ylim(0, 1.03)
    _one_legend(fig, [ax], hue)
    return fig


def quality_lines(
    df: pd.DataFrame, x: str, ys: list[tuple[str, str]], hue: str, title: str, logx: bool = True
) -> Figure:
    """Mean ± std over seeds per `hue`; a point whose cells did not all converge (a `converged`
    column that is False: stopped by the step cap) is drawn hollow, so it reads as a budget."""
    fig, axes = _axes(len(ys))
    palette = _palette(df, hue) or {}
    for ax, (col, label) in zip(axes, ys, strict=True):
        sub = df[df[col].notna()]
        sns.lineplot(data=sub, x=x, y=col, errorbar="sd", ax=ax, **_hue(df, hue))
        points = sub.groupby([hue, x]).agg(mean=(col, "mean"), ok=("converged", "all"))
        for (level, xv), r in points.iterrows():
            color = palette.get(level, "C0")
            face = color if r["ok"] else "white"
            ax.plot([xv], [r["mean"]], "o", color=color, markerfacecolor=face, markersize=7)
        _scale(ax, logx, False, 2, sorted(sub[x].unique()))
        ax.grid(True, alpha=0.3)
        ax.set_ylabel(label)
        if col in UNIT_INTERVAL:
            ax.set_ylim(-0.03, 1.03)
    _one_legend(fig, axes, hue)
    fig.suptitle(f"{title}\n(hollow marker: a seed stopped at the step cap)", fontsize=10)
    return fig
