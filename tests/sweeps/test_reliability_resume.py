"""A damaged sweep row is never trusted: the resume reruns its cell, the report names it.

Damage is what a file cut short, a full disk or an editor leaves: a row without its line end
(also inside a quoted field), too few or too many fields, an empty or unparsable identity field.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from benchmarks.report.build import build_report, load_raw
from benchmarks.sweeps.cell import Cell
from benchmarks.sweeps.store import read_rows
from benchmarks.sweeps.sweep import run_sweep

CELLS = 4


def tiny_cell(seed: int) -> Cell:
    """A real, ~0.3 s training run (as tests/sweeps/test_executors.py's tiny_cell)."""
    args = {"length": 4, "seed": seed, "n_train": 48, "n_val": 8, "n_test": 8}
    train = {"d_model": 16, "batch_size": 8, "max_steps": 4, "warmup_steps": 1, "eval_every": 4}
    return Cell("test", "reverse", args, "rnn", train | {"meteor": False, "seed": seed})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CSV text of a finished sweep of CELLS tiny cells (seeds 0, 1, ...)."""
    out = tmp_path_factory.mktemp("sweep") / "sweep.csv"
    run_sweep([tiny_cell(s) for s in range(CELLS)], out, executor="sequential")
    return out.read_text()


def test_resume_reruns_exactly_the_cell_whose_row_was_cut_short(tmp_path, finished):
    out = tmp_path / "sweep.csv"
    lines = finished.splitlines(keepends=True)
    assert len(lines) == CELLS + 1
    damaged_id = lines[-1].split(",", 1)[0]
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # keeps its cell_id
    rerun: list[dict[str, Any]] = []
    cells = [tiny_cell(s) for s in range(CELLS)]
    rows = run_sweep(cells, out, executor="sequential", on_row=rerun.append)
    assert [r["cell_id"] for r in rerun] == [damaged_id]
    assert sorted(r["cell_id"] for r in read_rows(out)) == sorted(c.cell_id for c in cells)
    after = out.read_text().splitlines(keepends=True)
    assert len(rows) == CELLS and after[:-1] == lines[:-1]  # the good rows are kept as they were


def _damage(text: str, how: str) -> str:
    """A finished sweep's CSV with its 3rd data row (line 4) damaged `how`."""
    lines = text.splitlines(keepends=True)
    row = lines[3]
    if how == "cut_in_quotes":  # the file ends inside the quoted `history` JSON of its 4th row
        return "".join(lines[:4]) + lines[4][: lines[4].index('"[{') + 20]
    if how == "too_few_fields":
        row = row[: row.index(',"{')] + "\n"  # ends after the seed column
    elif how == "blank_status":
        row = row.replace(",ok,", ",,")
    elif how == "bad_json":
        row = row.replace('"{""length', '"{""length"":', 1)
    elif how == "edited_identity":  # another seed in task_args: the cell_id no longer matches
        row = re.sub(r'""seed"": \d+\}",', '""seed"": 77}",', row, count=1)
    return "".join(lines[:3] + [row] + lines[4:])


DAMAGE = ["cut_in_quotes", "too_few_fields", "blank_status", "bad_json", "edited_identity"]


@pytest.mark.parametrize("how", DAMAGE)
def test_read_rows_drops_a_damaged_row_and_keeps_the_rest(tmp_path, how, finished):
    path = tmp_path / "quality_cpu.csv"
    text = finished
    path.write_text(_damage(text, how))
    assert path.read_text() != text  # the damage really happened
    ids = [line.split(",", 1)[0] for line in text.splitlines()[1:]]
    kept = [r["cell_id"] for r in read_rows(path)]
    # cut: the file ends inside its 4th row; else: its 3rd row is damaged, the others intact
    assert kept == (ids[:3] if how == "cut_in_quotes" else ids[:2] + ids[3:])


@pytest.mark.parametrize("how", ["cut_in_quotes", "blank_status"])  # the two cases
def test_report_names_a_row_it_cannot_use_and_builds_the_rest(tmp_path, how, finished):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "quality_cpu.csv").write_text(_damage(finished, how))
    build_report(raw, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    line = 5 if how == "cut_in_quotes" else 4
    named = [s for s in readme.splitlines() if "could not be used" in s]
    assert len(named) == 1 and f"`quality_cpu.csv` line {line} (cell " in named[0], named
    assert "No training cell failed." in readme  # a damaged row is not shown as a failed cell


def test_report_error_messages_are_one_line(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    bad = {
        "scaling_init_cpu.csv": "dh,scaled,entropy_ratio,grad_norm\n16,True,0.9,0.1\n1,2,3,4,5,6\n",
        "kernel_memory_cpu.csv": b"kernel,n,mode,status,peak_mem_mb\n\xff\xfe\n",
        "kernels_cpu.json": '{"benchmarks": [\n',
    }
    for name, content in bad.items():
        for path in raw.iterdir():
            path.unlink()
        path = raw / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        try:
            raw_data = load_raw(raw)
        except ValueError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), repr(str(exc))
        else:  # a row it could not use is named instead
            kind = name.split("_cpu")[0]
            assert raw_data[kind]["cpu"].attrs["unusable"], name


def test_report_of_a_row_with_an_extra_field_names_it(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = "dh,scaled,n_keys,seed,entropy,entropy_ratio,logit_std,grad_norm\n"
    rows += "16,True,64,0,4.0,0.96,1.0,0.1\n16,False,64,0,1.0,0.3,1.0,0.01,9\n"
    (raw / "scaling_init_cpu.csv").write_text(rows)
    df = load_raw(raw)["scaling_init"]["cpu"]
    assert len(df) == 1 and df.attrs["unusable"] == ["line 3: 9 fields, the header has 8"]
