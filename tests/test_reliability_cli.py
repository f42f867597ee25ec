"""Bad input is refused when a command starts: one line `error: ...` naming the flag (or task
key) and the value, exit code 2, before any training, and with no file or folder written.

Commands run in-process through `benchmarks.cli.main`; none of them gets as far as training, so
each test takes milliseconds (a regression would train, and show up as a slow failure).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.timing import devices
from tests.tasks.real_data_fixtures import write_plain

TINY = "--task reverse --length 3 --task-arg n_train=16 --task-arg n_val=4 --task-arg n_test=4"
TINY = TINY.split() + "--d-model 8 --max-steps 2 --eval-every 2 --no-meteor".split()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders


def refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """main(argv) must fail as bad input: exit 2, nothing on stdout, one stderr line."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def no_gpu(monkeypatch):
    """Whatever this machine has, only the CPU is available."""
    monkeypatch.setattr(devices, "_available", lambda name: name == "cpu")


@pytest.mark.parametrize(
    "command",
    [
        ["train", *TINY],
        ["caption", "--checkpoint", "missing.pt"],
        *[[sweep, "--profile", "quick"] for sweep in ("quality", "ablations", "kernels", "all")],
    ],
)
def test_unavailable_device_is_refused_by_every_command_before_work(
    command, tmp_path, capsys, no_gpu
):
    out = tmp_path / "results"
    extra = ["--results", str(out)] if command[0] not in ("train", "caption") else []
    line = refused([*command, "--device", "cuda", *extra], capsys)
    assert "--device" in line and "'cuda' is not available" in line
    assert not out.exists()  # the sweeps made results/raw before the check


def test_train_out_that_is_a_directory_is_refused_before_training(tmp_path, capsys):
    line = refused(["train", *TINY, "--out", str(tmp_path)], capsys)
    assert line == f"error: --out {tmp_path}: is a directory; give a file path"


def test_checkpoint_dir_that_is_a_file_names_the_flag(tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("keep me")
    line = refused(["train", *TINY, "--checkpoint-dir", str(path)], capsys)
    assert line == f"error: --checkpoint-dir {path} exists and is not a directory"
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("command", ["quality", "ablations", "kernels", "all", "report"])
def test_results_that_is_a_file_is_refused(command, tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("keep me")
    line = refused([command, "--results", str(path)], capsys)  # (report has no --profile)
    assert line == f"error: --results {path} exists and is not a directory"


def test_caption_out_that_is_a_directory_is_refused_before_decoding(tmp_path, capsys):
    line = refused(["caption", "--checkpoint", "missing.pt", "--out", str(tmp_path)], capsys)
    assert line.startswith(f"error: --out {tmp_path}: is a directory")


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir", "--results"])
def test_output_in_a_read_only_folder_is_refused(flag, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if IS_ROOT:  # root may write anywhere: have os.access answer as it would for anyone else
        access = os.access

        def as_user(path, mode, **kw):
            return not (Path(path) == ro and mode & os.W_OK) and access(path, mode, **kw)

        monkeypatch.setattr(os, "access", as_user)
    try:
        command = ["quality", "--profile", "quick"] if flag == "--results" else ["train", *TINY]
        line = refused([*command, flag, str(ro / "x")], capsys)
        assert line.startswith(f"error: {flag} {ro / 'x'}") and "not writable" in line
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_threads_below_one_is_refused(threads, capsys):
    line = refused(["train", *TINY, "--threads", threads], capsys)
    assert line == f"error: --threads {threads}: must be an integer >= 1"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", *TINY, "--max-steps", "abc"], "argument --max-steps: invalid int value: 'abc'"),
        (["train", *TINY, "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
        (["train", *TINY, "--bogus"], "unrecognized arguments: --bogus"),
        (["quality", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["nope"], "argument command: invalid choice: 'nope'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_argparse_errors_are_one_line(argv, expected, capsys):
    assert expected in refused(argv, capsys)


def test_train_settings_are_named_by_their_flag(capsys):
    line = refused(["train", *TINY, "--eval-every", "0"], capsys)
    assert line == "error: --eval-every=0: must be an integer >= 1"


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("n_train=abc", "task 'reverse': n_train='abc' must be an integer"),
        ("n_train=2.5", "task 'reverse': n_train=2.5 must be an integer"),
        ("num_symbols=true", "task 'reverse': num_symbols=True must be an integer"),
        ("seed=null", "task 'reverse': seed=None must be an integer"),
    ],
)
def test_task_argument_of_the_wrong_type_names_its_key(arg, expected, capsys):
    assert refused(["train", *TINY, "--task-arg", arg], capsys) == f"error: {expected}"


def test_plain_val_fraction_of_the_wrong_type_names_its_key(tmp_path, capsys):
    files = write_plain(tmp_path, n_images=6)
    argv = ["train", "--task", "plain", "--task-arg", f"captions={files.captions}"]
    argv += ["--task-arg", f"features={files.features}", "--task-arg", "val_fraction=abc"]
    line = refused(argv, capsys)
    assert line == "error: task 'plain': val_fraction='abc' must be a number"


def test_profile_and_executor_are_checked_before_results_is_made(tmp_path, capsys):
    out = tmp_path / "results"
    line = refused(["quality", "--profile", "huge", "--results", str(out)], capsys)
    assert line.startswith("error: --profile: unknown profile 'huge'")
    line = refused(["ablations", "--executor", "dask", "--results", str(out)], capsys)
    assert line.startswith("error: --executor dask: unknown executor 'dask'")
    assert not out.exists()


def test_workers_below_one_is_refused(tmp_path, capsys):
    argv = ["quality", "--profile", "quick", "--workers", "0", "--results", str(tmp_path / "r")]
    line = refused(argv, capsys)
    assert line == "error: --workers 0: must be an integer >= 1"
    assert not Path(tmp_path / "r").exists()
