"""``python -m benchmarks [SCENARIO ...] [--runs N]``: measure, print the figures, exit 0.

Timing never makes it fail: every figure is printed next to its SPEC.md bar. It exits
1 only when a scenario could not be measured at all (its error is printed), and 130
on Ctrl-C; the server and the temp files are cleaned up either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rich.console import Console

from benchmarks import (
    dask_s3,
    dispatch_pass,
    floor,
    logs,
    readers,
    runs_list,
    staging,
    submit,
    sweep,
)
from benchmarks.context import Bench


def _images(bench: Bench) -> None:
    from benchmarks import images  # model images (issue 15)

    images.run(bench)


def _writers(bench: Bench) -> None:
    from benchmarks import writers  # concurrent writers on SQLite (issue 18)

    writers.run(bench)


def _cluster(bench: Bench) -> None:
    from benchmarks import cluster_start  # elastic compute on Slurm (issue 16)

    cluster_start.run(bench)


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "floor": floor.run,
    "submit": submit.run,
    "staging": staging.run,
    "logs": logs.run,
    "runs_list": runs_list.run,
    "dispatch_pass": dispatch_pass.run,
    "readers": readers.run,
    "sweep": sweep.run,
    "dask": dask_s3.run_dask,
    "s3": dask_s3.run_s3,
    "writers": _writers,
    "images": _images,
    "cluster": _cluster,
}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line on the machine the figures were taken on."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, "
        f"{platform.system()} {platform.release()}, load average {load}\n"
        f"Python {platform.python_version()} ({sys.executable})"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure simyard against the quality bars of SPEC.md (figures only).",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"which to run, in this order: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        metavar="N",
        help="samples for the latency figures (default: floor 100, submit 50)",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a SIGTERM cleans up like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    chosen = args.scenarios or list(SCENARIOS)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    console.print(f"[bold]simyard benchmarks[/bold]\n{machine()}")
    failed: list[str] = []
    with Bench(console, runs=args.runs) as bench:
        try:
            for name in chosen:
                console.rule(f"[bold]{name}")
                started = time.monotonic()
                try:
                    SCENARIOS[name](bench)
                except Exception as exc:  # one broken scenario must not hide the others
                    console.print(f"[red]{name} could not be measured:[/red] {exc!r}")
                    bench.note(f"{name}: could not be measured: {exc!r}")
                    failed.append(name)
                console.print(f"[dim]{name} took {time.monotonic() - started:.1f} s[/dim]")
            bench.stop_server()
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; stopping the server and cleaning up[/yellow]")
            return 130
        console.rule("[bold]what looked wrong in simyard")
        for finding in bench.findings or [
            "nothing: no refused request, failed run or server error"
        ]:
            console.print(f"- {finding}", soft_wrap=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
