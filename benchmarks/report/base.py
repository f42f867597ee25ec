"""The report's building blocks: fixed number formats, Markdown tables, mean ± std over seeds,
and `Report`, which collects README lines while writing tables/*.md and plots/*.png.

Formats are fixed (never locale- or time-dependent), so the same data gives the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmarks.report.plots import save_figure

INT_COLUMNS = set("length seed seeds n b h dh t batch n_keys params steps threads".split())
INLINE_ROWS = 40  # longer tables are linked from the README, not embedded


def fmt(x: Any) -> str:
    """One fixed format per magnitude: 1,234 / 12.3 / 0.123 / 1.23e-04; missing -> '–'."""
    if x is None or x is pd.NA:
        return "–"
    if isinstance(x, str):
        return x or "–"
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    x = float(x)
    if not math.isfinite(x):
        return "–"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}" if a >= 0.01 or a == 0 else f"{x:.3g}"


def pm(values: Iterable[float]) -> str:
    """'mean ± std' (sample std over seeds); just the mean for one value; '–' for none."""
    v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna()
    if v.empty:
        return "–"
    return fmt(v.mean()) if len(v) < 2 else f"{fmt(v.mean())} ± {fmt(v.std(ddof=1))}"


def stop_counts(stops: pd.Series) -> str:
    """'target×2', 'plateau×1 cap×1': how the seeds of one point stopped."""
    return " ".join(f"{s}×{n}" for s, n in stops.value_counts().sort_index().items())


def parse_json(value: Any, default: Any) -> Any:
    """A JSON cell of a raw CSV; empty or NaN -> `default`."""
    return json.loads(value) if isinstance(value, str) and value.strip() else default


def _int_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Count columns (a length, N) that a NaN upcast to float, shown as integers again."""
    out = df.copy()
    for c in out.columns:
        v = out[c]
        if c in INT_COLUMNS and v.dtype.kind == "f" and (v.dropna() % 1 == 0).all():
            out[c] = v.astype("Int64")
    return out


def markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table; numeric columns right-aligned, every cell through `fmt`."""
    df = _int_columns(df)
    head = [str(c) for c in df.columns]
    align = [" ---: " if df[c].dtype.kind in "iuf" else " --- " for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for row in df.itertuples(index=False):
        cells = [fmt(v).replace("|", "\\|").replace("\n", " ") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """mean ± std of each metric per group of `keys` (metrics absent from every row dropped),
    and, for training cells, how the group's cells stopped (`stops`: target / plateau / cap)."""
    keep = [m for m in metrics if m in df and pd.to_numeric(df[m], errors="coerce").notna().any()]
    stops = ["stops"] if "stop_reason" in df else []  # how each group's cells stopped
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key, strict=True)) | {"seeds": len(g)}
        row |= {"stops": stop_counts(g["stop_reason"])} if stops else {}
        rows.append(row | {m: pm(g[m]) for m in keep})
    return pd.DataFrame(rows, columns=[*keys, "seeds", *stops, *keep])


def numeric(df: pd.DataFrame, cols: Iterable[str]) -> pd.DataFrame:
    """A copy with `cols` (those present) as floats; unparsable cells become NaN."""
    out = df.copy()
    for c in cols:
        if c in out:
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


@dataclass
class Report:
    """Collects README lines and writes tables/plots under `out`, remembering every path."""

    out: Path
    md: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def h(self, level: int, title: str) -> None:
        self.md += [f"{'#' * level} {title}", ""]

    def say(self, *sentences: str) -> None:
        text = " ".join(s for s in sentences if s)
        if text:
            self.md += [text, ""]

    def table(self, name: str, df: pd.DataFrame, caption: str = "") -> None:
        """tables/<name>.md; embedded in the README when short, linked when long."""
        path = self.out / "tables" / f"{name}.md"
        text = markdown(df)
        self._write(path, (f"{caption}\n\n" if caption else "") + text + "\n")
        link = f"[`tables/{name}.md`](tables/{name}.md)"
        if len(df) <= INLINE_ROWS:
            self.md += [f"{caption} ({link})" if caption else link, "", text, ""]
        else:
            self.md += [f"{caption}: {len(df)} rows in {link}.", ""]

    def figure(self, name: str, fig: Figure) -> None:
        self.image(save_figure(fig, self.out / "plots" / f"{name}.png"))

    def image(self, path: Path) -> None:
        self.written.append(path)
        rel = path.relative_to(self.out).as_posix()
        self.md += [f"![{path.stem}]({rel})", ""]

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        self.written.append(path)
