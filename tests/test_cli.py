"""`python -m benchmarks train|caption`, called in-process through `benchmarks.cli.main`.

Runs are a few steps on tiny tasks; what is checked is the plumbing: JSON on stdout and in
--out, checkpoints that `caption` can decode from, PNG heat maps, and bad input answered with
exit code 2 and one line on stderr naming the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.tasks import list_tasks

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_RUN = "--d-model 16 --batch-size 16 --max-steps 4 --warmup-steps 2 --eval-every 2".split()
SMALL_RUN += ["--no-meteor"]
REVERSE = "--task reverse --length 3 --task-arg n_train=32 --task-arg n_val=8".split()
REVERSE += "--task-arg n_test=8 --task-arg num_symbols=5".split()
DIGITS = "--task digits --length 2 --task-arg n_train=16 --task-arg n_val=4".split()
DIGITS += ["--task-arg", "n_test=4"]


def run_ok(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """main(argv) must succeed; returns its stdout."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def run_bad(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """main(argv) must fail as bad input: exit code 2, one stderr line; returns that line."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_train_prints_json_and_writes_out(tmp_path, capsys):
    out_file = tmp_path / "res" / "run.json"
    out = run_ok(
        ["train", *REVERSE, *SMALL_RUN, "--decoder", "rnn", "--out", str(out_file)], capsys
    )
    summary = json.loads(out)
    assert summary == json.loads(out_file.read_text())
    assert (summary["task"], summary["decoder"], summary["steps"]) == ("reverse", "rnn", 4)
    assert (summary["length"], summary["n_train"], summary["seed"]) == (3, 32, 0)
    assert summary["params"] > 0 and summary["tokens_per_s"] > 0
    for key in ("exact_match", "token_accuracy", "bleu4", "cider", "perplexity"):
        assert key in summary["test"], key
    assert summary["test"]["meteor"] is None  # --no-meteor


@pytest.mark.parametrize(
    ("decoder", "task", "n"), [("rnn_attn", DIGITS, 1), ("transformer", REVERSE, 2)]
)
def test_cli_caption_writes_heatmap(tmp_path, capsys, decoder, task, n):
    ckpt_dir = tmp_path / "ckpt"
    run_ok(
        ["train", *task, *SMALL_RUN, "--decoder", decoder, "--checkpoint-dir", str(ckpt_dir)],
        capsys,
    )
    png = tmp_path / "maps" / "attn.png"
    out = run_ok(
        ["caption", "--checkpoint", str(ckpt_dir / "last.pt"), "--n", str(n), "--out", str(png)],
        capsys,
    )
    lines = out.strip().splitlines()
    assert len(lines) == n + 1
    assert all("|  reference: " in line for line in lines[:n])
    assert lines[-1] == f"wrote {png}"
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_cli_caption_default_path_beside_checkpoint(tmp_path, capsys):
    run_ok(["train", *REVERSE, *SMALL_RUN, "--checkpoint-dir", str(tmp_path)], capsys)
    run_ok(["caption", "--checkpoint", str(tmp_path / "last.pt")], capsys)
    assert (tmp_path / "last.attention.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_caption_rnn_has_no_attention(tmp_path, capsys):
    run_ok(
        ["train", *REVERSE, *SMALL_RUN, "--decoder", "rnn", "--checkpoint-dir", str(tmp_path)],
        capsys,
    )
    out = run_ok(["caption", "--checkpoint", str(tmp_path / "last.pt")], capsys)
    assert "decoder 'rnn' has no attention" in out
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--task", "nope"], "unknown task 'nope'"),
        (["train", *REVERSE, "--decoder", "rnn_atn"], "unknown decoder 'rnn_atn'"),
        (["train", *REVERSE, "--task-arg", "bogus=1"], "unknown config key(s) ['bogus']"),
        (["train", *REVERSE, "--task-arg", "n_train"], "--task-arg expects KEY=VALUE"),
        (["train", *REVERSE, "--decoder-arg", "bogus=1"], "unknown config key(s) ['bogus']"),
        (["train", *REVERSE, "--task-arg", "num_symbols=1"], "num_symbols=1"),
    ],
)
def test_cli_bad_input_exits_2(capsys, argv, expected):
    assert expected in run_bad(argv, capsys)


def test_cli_missing_checkpoint_exits_2(tmp_path, capsys):
    line = run_bad(["caption", "--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert f"checkpoint not found: {tmp_path / 'none.pt'}" in line


def test_cli_corrupt_checkpoint_exits_2(tmp_path, capsys):
    path = tmp_path / "last.pt"
    path.write_bytes(os.urandom(256))
    assert f"cannot read checkpoint {path}" in run_bad(
        ["caption", "--checkpoint", str(path)], capsys
    )


def test_cli_coco_missing_data_dir_exits_2(tmp_path, capsys):
    missing = tmp_path / "no_coco"
    line = run_bad(["train", "--task", "coco", "--task-arg", f"data_dir={missing}"], capsys)
    assert str(missing) in line and "data_dir not found" in line


def test_cli_module_exit_code_in_subprocess():
    # the real entry point: `python -m benchmarks` turns main()'s return value into the exit code
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "train", "--task", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: unknown task 'nope'; choose from {list_tasks()}"
    ]


def test_cli_caption_refuses_checkpoint_without_task_args(tmp_path, capsys):
    """train() called from code without task_args: caption must not guess the task's defaults."""
    from benchmarks.harness.train import TrainConfig, train
    from benchmarks.tasks import load_task

    task = load_task("reverse", length=3, n_train=16, n_val=4, n_test=4, num_symbols=6)
    cfg = TrainConfig(
        decoder="rnn",
        d_model=16,
        max_steps=2,
        eval_every=2,
        meteor=False,
        checkpoint_dir=str(tmp_path),
    )
    train(task, cfg)
    line = run_bad(["caption", "--checkpoint", str(tmp_path / "last.pt")], capsys)
    assert "does not record its task arguments" in line
