"""Attention heat maps: which input position each output token looked at.

Shapes: T generated tokens, S memory positions. For digit strips the map is drawn under the
strip image itself, so the alignment can be read against the handwriting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_alignment(
    ax: plt.Axes,
    attn: np.ndarray,
    out_words: Sequence[str],
    in_labels: Sequence[str] | None = None,
    title: str = "",
) -> None:
    """attn (T, S) as an image: rows = output tokens, columns = memory positions."""
    ax.imshow(attn, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(attn.max()), 1e-6))
    ax.set_yticks(range(len(out_words)), out_words, fontsize=7)
    if in_labels is not None and len(in_labels) <= 64:
        ax.set_xticks(range(len(in_labels)), in_labels, rotation=90, fontsize=7)
    ax.set_xlabel("memory position")
    ax.set_title(title, fontsize=9)


def save_heatmaps(
    path: Path,
    panels: Sequence[dict],
    image: np.ndarray | None = None,
) -> Path:
    """One figure with an optional strip image on top and one alignment panel per entry of
    `panels` (dicts with attn (T,S), out_words, in_labels, title). Returns the path written."""
    rows = len(panels) + (image is not None)
    heights = ([1.0] if image is not None else []) + [2.0] * len(panels)
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(8, sum(heights) * 1.2 + 0.5),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    axes = axes[:, 0]
    if image is not None:
        axes[0].imshow(image, cmap="gray_r", aspect="auto")
        axes[0].set_axis_off()
        axes = axes[1:]
    for ax, panel in zip(axes, panels, strict=True):
        plot_alignment(
            ax,
            np.asarray(panel["attn"]),
            panel["out_words"],
            panel.get("in_labels"),
            panel.get("title", ""),
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
