"""The report: a pure, byte-deterministic function of small synthetic raw files.

The raw files below use the columns the sweeps and the kernel benchmark write (sweep.run_cell,
ablations.scaling_init_rows, bench_attention's extra_info, kernels.CSV_COLUMNS); there is a failed
cell, a skipped kernel case, and no cuda files at all. Numbers asserted in the Markdown are computed
here by hand from the values written.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.report.base import fmt, markdown, pm
from benchmarks.report.build import build_report, load_raw

GEMM_FLOPS, GEMM_S = 2.0e9, 0.02  # a 100 GFLOP/s peak
BASE = {"device": "cpu", "torch": "2.13.0+cpu", "threads": 2, "git_commit": "abc123"}
EM = {  # (task, length, decoder) -> exact match for seeds 0 and 1
    ("digits", 2, "rnn"): (0.92, 1.0), ("digits", 4, "rnn"): (0.5, 0.7),
    ("digits", 2, "transformer"): (1.0, 1.0), ("digits", 4, "transformer"): (0.96, 1.0),
    ("reverse", 8, "rnn"): (0.1, 0.3), ("reverse", 8, "transformer"): (0.9, 0.8),
}  # fmt: skip
CFG = {"d_model": 32, "max_steps": 150, "batch_size": 64, "lr": 3e-3, "warmup_steps": 6}


def _row(task: str, decoder: str, seed: int, em: float, length: int | None = None, **kw) -> dict:
    """One sweep.run_cell row: metrics derived from its exact match `em`."""
    history = [
        {"step": s, "tokens": 64 * s, "train_loss": 2.0 / s, "exact_match": em * s / 30}
        for s in (10, 20, 30)
    ]
    row = {
        "cell_id": f"{task}{length}{decoder}{seed}{kw.get('label', '')}", "sweep": "quality",
        "task": task, "length": length, "split": None, "decoder": decoder, "label": "",
        "seed": seed, "task_args": json.dumps({"length": length}),
        "train_cfg": json.dumps(CFG | {"seed": seed}), **BASE, "params": 1000, "steps": 60,
        "train_s": 2.0 + seed, "tokens_per_s": 500.0, "bleu4": em / 2, "cider": em,
        "meteor": None, "exact_match": em, "token_acc": em, "ppl": 2.0, "val_loss": 0.7,
        "tf_token_acc": min(1.0, em + 0.05), "history": json.dumps(history), "status": "ok",
        "error": "", "wall_s": 3.0, "stop_reason": "target" if em >= 0.99 else "plateau",
        "tokens": 64 * 30, "tokens_to_95": 64 * 30 if em >= 0.95 else None,
        "val_exact_match": em, "val_token_acc": em, "hparams": "tuned",
    }  # fmt: skip
    return row | kw


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _quality_rows() -> list[dict]:
    rows = [_row(t, d, s, em[s], n) for (t, n, d), em in EM.items() for s in (0, 1)]
    for dec, em in (("rnn", 0.2), ("transformer", 0.6)):  # long outputs: half the exact match
        buckets = {"len4-7_n": 10.0, "len4-7_exact_match": em, "len16+_n": 2.0,
                   "len16+_exact_match": em / 2, "len16+_nll": 1.0}  # fmt: skip
        rows.append(_row("scan", dec, 0, em, split="simple", label="scan-simple",
                         test_buckets=json.dumps(buckets, sort_keys=True)))  # fmt: skip
    oom = "OutOfMemoryError: CUDA out of memory at train.py:99"
    return rows + [_row("reverse", "rnn_attn", 0, 0.0, 8, status="oom", error=oom)]


def _ablation_rows() -> list[dict]:
    attn = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]  # (T=2, S=3)
    image = [[float((i + j) % 3) for j in range(12)] for i in range(4)]  # (H, W) digit strip
    rows = []
    for task in ("digits", "reverse"):
        for dec, frac in (("rnn_attn", 0.75), ("transformer", 0.5)):
            ex = {"id": 7, "attn": attn, "out_words": ["one", "<eos>"],
                  "in_labels": None if task == "digits" else ["a", "b", "c"],
                  "image": image if task == "digits" else None}  # fmt: skip
            rows.append(_row(task, dec, 0, 0.9, 4, sweep="alignment", alignment_fraction=frac,
                             alignment_examples=json.dumps([ex])))  # fmt: skip
    labelled = [
        ("positional", task, "transformer", 16, f"positional={pos}", em)
        for task in ("reverse", "sort")
        for pos, em in (("sinusoidal", 0.9), ("learned", 0.7), ("none", 0.1))
    ]
    labelled += [
        ("alignment_fn", "reverse", "rnn_attn", 32, f"alignment={fn}", em)
        for fn, em in (("additive", 0.8), ("dot", 0.6), ("general", 0.7), ("scaled_dot", 0.65))
    ]
    labelled += [("scaling", "reverse", "transformer", 16, f"scaled={sc}", em)
                 for sc, em in ((True, 0.8), (False, 0.3))]  # fmt: skip
    rows += [
        _row(task, dec, 0, em, n, sweep=sw, label=lab) for sw, task, dec, n, lab, em in labelled
    ]
    nan = "FloatingPointError: loss is nan"  # the status "nan" must not be read as a missing value
    rows.append(
        _row("sort", "transformer", 0, 0.0, 16, sweep="positional", status="nan", error=nan)
    )
    for causal, em, tf, greedy in ((True, 0.9, 0.95, 0.93), (False, 0.0, 0.99, 0.12)):
        rows.append(_row("reverse", "transformer", 0, em, 16, sweep="causal",
                         label=f"causal={causal}", tf_token_acc=tf, token_acc=greedy))  # fmt: skip
    return rows


def _scaling_init_rows() -> list[dict]:
    return [{"dh": dh, "scaled": sc, "n_keys": 64, "seed": s, "entropy": 4.0 if sc else 1.0,
             "entropy_ratio": 0.96 if sc else 0.3 / dh**0.5, "logit_std": 1.0,
             "grad_norm": 0.1 if sc else 0.01 / dh}
            for dh in (16, 64, 256) for sc in (True, False) for s in (0, 1)]  # fmt: skip


def _bench(kind: str, median: float, **info) -> dict:
    """One pytest-benchmark record with bench_attention's extra_info."""
    return {"name": f"test_{kind}[{info.get('kernel', info.get('decoder'))}]", "group": kind,
            "extra_info": {"kind": kind, **BASE, "allocator": "glibc", "load_1m": 1.5, **info},
            "stats": {"median": median, "iqr": median / 10, "rounds": 5}}  # fmt: skip


def _kernel(kernel: str, n: int, mode: str, causal: bool, frac: float | None,
            peak: float = GEMM_FLOPS / GEMM_S, **info) -> dict:  # fmt: skip
    """A kernel record running at `frac` of the GEMM `peak` (additive: no FLOPs, 0.5 s)."""
    b, h, dh = 4096 // n, 4, 64
    flops = 4.0 * b * h * n * n * dh * (0.5 if causal else 1) * (3.5 if mode != "fwd" else 1)
    median = 0.5 if frac is None else flops / (frac * peak)
    return _bench("kernel", median, kernel=kernel, n=n, b=b, h=h, dh=dh, mode=mode, causal=causal,
                  flops=None if frac is None else flops, tokens=b * n,
                  query_key_pairs=b * h * n * n, **info)  # fmt: skip


def _kernels_json() -> dict:
    benches = [_bench("gemm", GEMM_S, kernel="gemm", n=1000, flops=GEMM_FLOPS, dtype="float32")]
    benches += [_kernel("sdpa", 128, "fwd", False, 0.8), _kernel("sdpa", 256, "fwd", False, 0.5),
                _kernel("dot", 128, "fwd", False, 0.25), _kernel("dot", 256, "fwd_bwd", True, 0.2),
                _kernel("additive", 128, "fwd", False, None),
                _kernel("flex", 128, "fwd", False, 0.4, compile_s=2.5)]  # fmt: skip
    for t in (1, 4):  # 1 ms per cached step; recomputing the prefix costs 2.5 ms per token
        for dec, cache, ms in (("rnn", None, 1.0), ("transformer", True, 1.0),
                               ("transformer", False, 2.5 * t)):  # fmt: skip
            benches.append(_bench("decode_step", ms / 1e3, decoder=dec, use_cache=cache, t=t,
                                  batch=2))  # fmt: skip
    for dec in ("rnn", "transformer"):
        benches.append(_bench("decode_total", 0.04, decoder=dec, use_cache=None, t=8, batch=2))
        for t in (8, 16):
            benches.append(_bench("train_step", 0.01 * t, decoder=dec, t=t, tokens=4 * t))
    for dec, median in (("rnn", 0.01), ("rnn_attn", 0.04), ("transformer", 0.02),
                        ("nn.TransformerDecoder", 0.025)):  # fmt: skip
        benches.append(_bench("train_throughput", median, decoder=dec, d_model=128, batch=64,
                              t=32, mem_len=32, vocab=20, tokens=2048, threads=1))  # fmt: skip
    skipped = [{"name": "test_kernel[additive-n256-full-fwd]", "kernel": "additive", "n": 256,
                "reason": "additive materialises (B,H,T,S,A): N capped at 128"}]  # fmt: skip
    return {"machine_info": {"attnbench": {"profile": "quick"}}, "benchmarks": benches,
            "skipped": skipped}  # fmt: skip


def _memory_rows() -> list[dict]:
    rows = [{"kernel": k, "n": n, "b": 4096 // n, "h": 4, "dh": 64, "causal": False, "mode": "fwd",
             "allocator": alloc, "peak_mem_mb": mb * n / 128, "predicted_mem_mb": mb * n / 100,
             "status": "ok", "reason": "", "dtype": "float32", "seed": 0, **BASE}
            for k, mb, alloc in (("dot", 40.0, "glibc"), ("sdpa", 4.0, "glibc"),
                                 ("sdpa", 5.0, "glibc-returned"))
            for n in (128, 256)]  # fmt: skip
    return rows + [
        rows[0]
        | {
            "n": 1 << 20,
            "peak_mem_mb": "",
            "status": "skipped",
            "reason": "predicted peak 99.0 GiB > 60% of 23.0 GiB RAM",
        }
    ]


def _tuning_rows() -> list[dict]:
    """reverse L=12: rnn reaches nothing (best val EM wins), transformer's lr 2e-3 reaches the
    target on fewer tokens than 1e-3."""
    rows = []
    for dec, lr, em, stop, tokens in (
        ("rnn", 3e-3, 0.4, "plateau", 9000), ("rnn", 6e-3, 0.5, "plateau", 9000),
        ("transformer", 1e-3, 0.99, "target", 8000), ("transformer", 2e-3, 0.99, "target", 5000),
    ):  # fmt: skip
        cfg = json.dumps(CFG | {"lr": lr, "warmup_steps": 100})
        rows.append(
            _row("reverse", dec, 0, em, 12, sweep="tuning", train_cfg=cfg, stop_reason=stop,
                 tokens=tokens, label=f"lr={lr:g} warmup=100")
        )  # fmt: skip
    return rows


def write_raw(raw: Path) -> None:
    raw.mkdir(parents=True)
    _write_csv(raw / "tuning_cpu.csv", _tuning_rows())
    _write_csv(raw / "quality_cpu.csv", _quality_rows())
    _write_csv(raw / "ablations_cpu.csv", _ablation_rows())
    _write_csv(raw / "scaling_init_cpu.csv", _scaling_init_rows())
    _write_csv(raw / "kernel_memory_cpu.csv", _memory_rows())
    (raw / "kernels_cpu.json").write_text(json.dumps(_kernels_json()))
    env = {"device": "cpu", "cpu_model": "Test CPU 9000", "threads": 2, "allocator": "glibc"}
    (raw / "env_cpu.json").write_text(json.dumps(env))
    (raw / "bench_timing_cpu.json").write_text(json.dumps({"quality": 60.5, "total": 100.25}))
    (raw / "notes.txt").write_text("not a raw file: ignored")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("report")
    write_raw(root / "raw")
    return root / "raw", root / "out", build_report(root / "raw", root / "out")


def _line(path: Path, *words: str) -> str:
    """The one Markdown row of `path` containing every word."""
    rows = [r for r in path.read_text().splitlines() if all(w in r for w in words)]
    assert len(rows) == 1, (words, rows)
    return rows[0]


def test_build_report_writes_tables_plots_and_readme(built) -> None:
    _, out, written = built
    tables = {p.stem for p in (out / "tables").glob("*.md")}
    plots = {p.stem for p in (out / "plots").glob("*.png")}
    assert {
        "quality_digits_cpu",
        "quality_reverse_cpu",
        "scan_cpu",
        "budget_cpu",
        "ready_cpu",
        "tokens_to_95_cpu",
        "tuning_cpu",
        "positional_cpu",
        "causal_cpu",
        "alignment_fn_cpu",
        "scaling_curves_cpu",
        "alignment_cpu",
        "scaling_init_cpu",
        "kernels_cpu",
        "kernels_skipped_cpu",
        "kernel_memory_cpu",
        "kernel_compile_cpu",
        "kernel_checks_cpu",
        "decode_step_cpu",
        "kv_cache_cpu",
        "decode_total_cpu",
        "train_step_cpu",
        "train_throughput_cpu",
        "failed_cells",
        "environment",
        "bench_timing",
        "inputs",
    } <= tables
    assert {
        "quality_digits_cpu",
        "curves_reverse_cpu",
        "tokens_to_95_cpu",
        "alignment_digits_cpu",
        "alignment_reverse_cpu",
        "scaling_init_cpu",
        "scaling_curves_cpu",
        "kernel_time_cpu",
        "kernel_throughput_cpu",
        "kernel_memory_cpu",
        "decode_step_cpu",
        "train_step_cpu",
    } <= plots
    readme = (out / "README.md").read_text()
    assert set(written) == {out / "README.md"} | set((out / "tables").glob("*.md")) | set(
        (out / "plots").glob("*.png")
    )
    for png in plots:
        assert f"](plots/{png}.png)" in readme
        assert (out / "plots" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"


def test_build_report_quality_mean_std_over_seeds(built) -> None:
    _, out, _ = built
    m, s = statistics.mean((0.92, 1.0)), statistics.stdev((0.92, 1.0))
    assert (f"{m:.3f}", f"{s:.3f}") == ("0.960", "0.057")
    row = _line(out / "tables" / "quality_digits_cpu.md", "| rnn | 2 |")
    assert (
        "| 2 | plateau×1 target×1 | 0.960 ± 0.057 | 0.480 ± 0.028 |" in row
    )  # seeds, stops, EM, BLEU-4
    assert "meteor" not in (out / "tables" / "quality_digits_cpu.md").read_text()  # all empty


def test_build_report_scan_by_split_and_target_length(built) -> None:
    _, out, _ = built
    assert "| simple | transformer | 1 | 0.600 |" in (out / "tables" / "scan_cpu.md").read_text()
    text = (out / "tables" / "scan_buckets_cpu.md").read_text()
    short = _line(out / "tables" / "scan_buckets_cpu.md", "| simple | transformer | 4-7 |")
    long = _line(out / "tables" / "scan_buckets_cpu.md", "| simple | transformer | 16+ |")
    assert long.startswith("| simple | transformer | 16+ | 2 | 1 | 0.300 |")  # n=2, 1 seed
    assert text.index(short) < text.index(long)  # buckets in length order, not string order


def test_build_report_longest_length_at_95_percent(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert "(converged cells only): rnn L=2, transformer L=4." in readme  # rnn: 0.6 at L=4
    assert "(converged cells only): rnn none, transformer none." in readme  # reverse: 0.2, 0.85
    assert "| reverse | transformer | none |" in (out / "tables" / "ready_cpu.md").read_text()


def test_build_report_lists_failed_cells(built) -> None:
    _, out, _ = built
    row = _line(out / "tables" / "failed_cells.md", "rnn_attn")
    assert "| oom |" in row and "OutOfMemoryError" in row and "| 8 |" in row
    row = _line(out / "tables" / "failed_cells.md", "| positional |")
    assert "| nan | FloatingPointError: loss is nan |" in row
    assert "2 cell(s) did not finish" in (out / "README.md").read_text()


def test_build_report_names_missing_device_files(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert "`quality_cuda.csv`" in readme and "`kernels_cuda.json`" in readme
    assert "`quality_cpu.csv`" not in readme.split("## Quality")[0]


def test_build_report_kernel_rate_is_share_of_gemm_peak(built) -> None:
    _, out, _ = built
    row = _line(out / "tables" / "kernels_cpu.md", "| sdpa | fwd | False | 256 |")
    assert "| 50.0 | 50.0 |" in row  # 50 GFLOP/s = 50 % of the 100 GFLOP/s GEMM
    assert "GEMM peak measured in this run: 100.0 GFLOP/s" in (out / "README.md").read_text()
    additive = _line(out / "tables" / "kernels_cpu.md", "| additive |")
    # 0.5 s median, 4096 tokens, 32*4*128^2 pairs; no FLOP count, so no rate or peak share
    assert additive.endswith("| 500.0 | 50.0 | – | – | 8,192 | 4.194 |")


def test_build_report_lists_skipped_kernel_cases(built) -> None:
    _, out, _ = built
    text = (out / "tables" / "kernels_skipped_cpu.md").read_text()
    assert "N capped at 128" in text and "predicted peak 99.0 GiB" in text


def test_build_report_kv_cache_ratio(built) -> None:
    _, out, _ = built
    row = _line(out / "tables" / "kv_cache_cpu.md", "| transformer | 4 |")
    assert row.endswith("| 10.0 |")  # recompute 2.5 * t ms vs 1 ms cached, at t = 4
    assert "(recompute)" in (out / "tables" / "decode_step_cpu.md").read_text()


def test_build_report_ablation_numbers(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert "causal=False: 0.990 vs 0.120 (gap 0.870)" in readme
    assert "reverse positional=sinusoidal (0.900)" in readme
    assert (
        "| digits | rnn_attn | 4 | 1 | plateau×1 | 0.750 |"
        in (out / "tables" / "alignment_cpu.md").read_text()
    )
    assert "At Dh=256" in readme and "(unscaled)" in readme


def test_build_report_environment_timing_and_commands(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert "Test CPU 9000" in (out / "tables" / "environment.md").read_text()
    assert _line(out / "tables" / "bench_timing.md", "total").endswith("| 100.2 |")
    assert "Wall time of `make bench`: cpu 100.2 s (1.671 min)." in readme
    commands = readme.split("```")[-2].splitlines()  # the profile matched from train_cfg
    assert "make bench PROFILE=quick DEVICE=cpu" in commands
    assert "python -m benchmarks quality --profile quick --device cpu" in commands


def test_build_report_rebuild_is_byte_identical(built, tmp_path: Path) -> None:
    raw, out, written = built
    again = build_report(raw, tmp_path)
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(out) for p in written]
    for a, b in zip(written, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_build_report_cuda_kernels_in_tflops_with_gpu_memory(tmp_path: Path) -> None:
    gemm = _bench("gemm", 0.001, kernel="gemm", n=4096, flops=400e9, dtype="bfloat16")  # 400 TF/s
    sdpa = _kernel("sdpa", 512, "fwd", False, 0.25, peak=400e12, peak_mem_mb=12.5)  # B = 8
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "kernels_cuda.json").write_text(json.dumps({"benchmarks": [gemm, sdpa]}))
    build_report(tmp_path / "raw", tmp_path / "out")
    table = (tmp_path / "out" / "tables" / "kernels_cuda.md").read_text()
    assert "| tflop_per_s | pct_gemm_peak |" in table and "peak_mem_mb |" in table
    # 100 TFLOP/s = 25 % of the GEMM; 4096 tokens and 2^23 pairs per 21.47 us call
    row = _line(tmp_path / "out" / "tables" / "kernels_cuda.md", "| sdpa |")
    assert row.endswith("| 100.0 | 25.0 | 190,734,863 | 390,625 | 12.5 |")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "400.0 TFLOP/s" in readme and "`quality_cpu.csv`" in readme
    # only the kernels phase ran on this device: no `make bench`, no sweep commands for it
    commands = readme.split("```")[-2].splitlines()
    assert [c for c in commands if "cuda" in c] == [
        "python -m benchmarks kernels --profile default --device cuda"
    ]


def test_build_report_empty_raw_dir_reports_missing_and_removes_stale(tmp_path: Path) -> None:
    stale = tmp_path / "out" / "tables" / "old.md"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an older build")
    written = build_report(tmp_path / "absent", tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "No `quality_<device>.csv`" in readme and "No training sweep" in readme
    assert not stale.exists() and stale.parent / "inputs.md" in written


def test_load_raw_rejects_csv_without_status(tmp_path: Path) -> None:
    _write_csv(tmp_path / "quality_cpu.csv", [{"task": "digits", "decoder": "rnn"}])
    with pytest.raises(
        ValueError, match=r"quality_cpu\.csv: missing column\(s\) \['status', 'trai"
    ):
        load_raw(tmp_path)


def test_fmt_and_pm_fixed_formats() -> None:
    values = (12345.6, 12.345, 0.5, 0.00123, None, float("nan"), 3, "x")
    expected = ["12,346", "12.3", "0.500", "0.00123", "–", "–", "3", "x"]
    assert [fmt(x) for x in values] == expected
    assert pm([1.0]) == "1.000" and pm([]) == "–" and pm([0.0, 1.0]) == "0.500 ± 0.707"


def test_markdown_renders_whole_floats_as_ints_and_escapes_pipes() -> None:
    import pandas as pd

    text = markdown(pd.DataFrame({"n": [2.0, None], "name": ["a|b", "c"]}))
    assert text.splitlines() == ["| n | name |", "| ---: | --- |", "| 2 | a\\|b |", "| – | c |"]


def test_main_writes_report_and_prints_summary(tmp_path: Path, capsys) -> None:
    assert main(["report", "--results", str(tmp_path / "out")]) == 0
    assert "README" in capsys.readouterr().out and (tmp_path / "out" / "README.md").exists()


def test_build_report_headline_rests_on_converged_cells_only(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert (
        "14 cells (cpu): 4 reached the target, 10 stopped on a plateau, 0 hit the step cap"
        in readme
    )
    assert "At L=8, the longest length where every cell converged" in readme
    assert (
        "rnn first falls below 50% exact match at L=8 (0.200; its seeds stopped on plateau×2"
        in readme
    )
    row = _line(out / "tables" / "quality_digits_cpu.md", "| transformer | 2 |")
    assert "target×2" in row


def _report_with_one_capped_cell(tmp_path: Path, rnn_exact_match: float) -> str:
    """Reverse at L=4, 8, two seeds each: rnn at `rnn_exact_match`, rnn_attn at 1.0 with its
    L=8 seed 1 stopped by the step cap. Builds the report; returns its README."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [_row("reverse", d, s, em, n) for d, em in (("rnn", rnn_exact_match), ("rnn_attn", 1.0))
            for n in (4, 8) for s in (0, 1)]  # fmt: skip
    rows[-1] |= {"stop_reason": "cap"}  # rnn_attn L=8 seed 1 ran out of steps
    _write_csv(raw / "quality_cpu.csv", rows)
    build_report(raw, tmp_path / "out")
    return (tmp_path / "out" / "README.md").read_text()


def test_build_report_capped_cells_carry_no_claim(tmp_path: Path) -> None:
    readme = _report_with_one_capped_cell(tmp_path, 0.2)
    assert "hit the step cap (reverse L=8 rnn_attn;" in readme
    assert "rnn_attn L=4 (L=8 capped: not a result)" in readme
    assert "At L=4, the longest length where every cell converged" in readme
    assert "cap×1 target×1" in _line(tmp_path / "out" / "tables" / "quality_reverse_cpu.md",
                                      "| rnn_attn | 8 |")  # fmt: skip


def test_build_report_marks_capped_cells_in_curves_and_tokens_to_95(tmp_path: Path) -> None:
    """A capped cell that reached 95 % stays in the tokens-to-95 table, marked by `stops`, but
    out of its plot's data and its sentence; the learning curves at that length name it."""
    readme = _report_with_one_capped_cell(tmp_path, 0.96)
    assert "reverse L=8: the curves of rnn_attn (cap×1) end at the step cap." in readme
    table = tmp_path / "out" / "tables" / "tokens_to_95_cpu.md"
    assert "cap×1 target×1" in _line(table, "| reverse | rnn_attn | 8 |")
    assert "Tokens to 95 % at the longest length two decoders reached: reverse L=4:" in readme


def test_build_report_tuning_table_marks_the_chosen_settings(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert "Chosen: rnn lr 0.006, warm-up 100; transformer lr 0.002, warm-up 100." in readme
    chosen = _line(out / "tables" / "tuning_cpu.md", "| transformer | 0.002 |")
    assert chosen.endswith("| ✓ |")
    assert not _line(out / "tables" / "tuning_cpu.md", "| transformer | 0.001 |").endswith("✓ |")


def test_build_report_scan_beside_lake_and_baroni(built) -> None:
    _, out, _ = built
    row = _line(out / "tables" / "scan_cpu.md", "| simple | transformer |")
    assert "0.997 (LSTM, no attention)" in row and "0.998 (LSTM, no attention)" in row


def test_build_report_states_the_training_throughput_ratios(built) -> None:
    _, out, _ = built
    readme = (out / "README.md").read_text()
    assert "rnn_attn/rnn = 0.25 at d_model 128" in readme  # 0.01 / 0.04 s per step
    assert "transformer/nn.TransformerDecoder = 1.25 at d_model 128" in readme  # 0.025 / 0.02
    row = _line(out / "tables" / "train_throughput_cpu.md", "| nn.TransformerDecoder |")
    assert "81,920" in row  # 2048 tokens / 0.025 s


def test_ablation_baselines_come_from_the_quality_sweep() -> None:
    import pandas as pd

    from benchmarks.report.ablations import with_baselines

    abl = pd.DataFrame([
        {"sweep": "causal", "task": "reverse", "length": 8, "decoder": "transformer",
         "label": "causal=False", "seed": 0, "exact_match": 0.1},
    ])  # fmt: skip
    quality = pd.DataFrame([
        {"sweep": "quality", "task": "reverse", "length": L, "decoder": d, "label": "",
         "seed": s, "exact_match": 0.9, "alignment_fraction": 0.8 if d != "rnn" else None}
        for L in (8, 16) for d in ("rnn", "transformer") for s in (0, 1)
    ])  # fmt: skip
    out = with_baselines(abl, quality)
    causal = out[out["sweep"] == "causal"].sort_values("label")
    assert list(causal["label"]) == ["causal=False", "causal=True"]
    assert causal.iloc[1][["length", "seed", "decoder"]].tolist() == [8, 0, "transformer"]
    aligned = out[out["sweep"] == "alignment"]
    assert len(aligned) == 4 and set(aligned["decoder"]) == {"transformer"}  # rnn has none
