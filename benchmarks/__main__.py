"""`python -m benchmarks <command>`: train, caption, quality, ablations, kernels, report, all."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.harness.checkpoint import CheckpointError
from benchmarks.cli import add_caption_parser, add_train_parser, run_caption, run_train
from benchmarks.tasks import TaskError

SWEEPS = ("quality", "ablations", "kernels", "all")


def add_sweep_parsers(sub: argparse._SubParsersAction) -> None:
    helps = {
        "quality": "decoder x task x length x seed: quality vs sequence length",
        "ablations": "the seed's claims: alignment, sqrt(D) scaling, positions, causal mask, ...",
        "kernels": "attention-kernel, decode and training-step timings (pytest-benchmark)",
        "all": "quality + ablations + kernels + report (what `make bench` runs)",
    }
    for name in SWEEPS:
        p = sub.add_parser(name, help=helps[name])
        p.add_argument("--profile", default="default", help="quick | default | full")
        p.add_argument("--device", default="cpu", help="cpu | cuda | mps")
        p.add_argument("--results", type=Path, default=Path("results"))
        if name != "kernels":
            p.add_argument("--executor", default="local", help="local | sequential | ray")
            p.add_argument(
                "--workers", type=int, default=None, help="local pool size (default: cores)"
            )
            p.add_argument(
                "--ray-address", default=None, help="with --executor ray: join this cluster"
            )
    p = sub.add_parser("report", help="tables, plots and results/README.md from results/raw")
    p.add_argument("--results", type=Path, default=Path("results"))


def run_sweep_command(args: argparse.Namespace) -> int:
    from benchmarks.sweeps import runner

    raw = args.results / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)

    ex = {}
    if args.command != "kernels":
        ex = {"executor": args.executor, "workers": args.workers, "ray_address": args.ray_address}
    if args.command == "quality":
        runner.run_quality(raw, args.profile, args.device, log, **ex)
    elif args.command == "ablations":
        runner.run_ablations(raw, args.profile, args.device, log, **ex)
    elif args.command == "kernels":
        from benchmarks.timing.kernels import run_kernels

        for path in run_kernels(args.device, args.profile, raw):
            log(f"wrote {path}")
    else:
        timing = runner.run_all(raw, args.results, args.profile, args.device, log, **ex)
        log(f"phases (s): {timing}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from benchmarks.report.build import build_report

    for path in build_report(args.results / "raw", args.results):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_caption_parser(sub)
    add_sweep_parsers(sub)
    args = parser.parse_args(argv)
    commands = {"train": run_train, "caption": run_caption, "report": run_report}
    command = commands.get(args.command, run_sweep_command)
    try:
        return command(args)
    except (TaskError, CheckpointError, KeyError, TypeError, ValueError) as exc:
        # bad input: one line naming the problem, never a deep traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
