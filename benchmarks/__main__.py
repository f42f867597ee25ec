"""`python -m benchmarks <command>`: train | caption | quality | ablations | kernels | report | all."""

from __future__ import annotations

import argparse
import sys

from benchmarks.checkpoint import CheckpointError
from benchmarks.cli_train import add_caption_parser, add_train_parser, run_caption, run_train
from benchmarks.tasks import TaskError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_caption_parser(sub)
    args = parser.parse_args(argv)
    commands = {"train": run_train, "caption": run_caption}
    try:
        return commands[args.command](args)
    except (TaskError, CheckpointError, KeyError, TypeError, ValueError) as exc:
        # bad input: one line naming the problem, never a deep traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
