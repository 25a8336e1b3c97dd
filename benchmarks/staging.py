"""Engine staging throughput: ``place_file`` of a 1 GiB file against ``cp``.

The source holds real (random) bytes, on the filesystem of /tmp; each copy goes to a
fresh destination next to it, with ``sync`` (untimed) before each so that one copy's
writeback does not slow the next. Neither side calls fsync: like ``cp``, the figure is
the time until the bytes are handed to the kernel.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, bar_row, table
from simyard.engine.workdir import StagedFiles, place_file

SIZE = 2**30
CHUNK = 16 * 2**20
REPEATS = 3


def write_source(path: Path) -> None:
    """``SIZE`` random bytes, written for real (no sparse file), then synced."""
    with open(path, "wb") as out:
        for _ in range(SIZE // CHUNK):
            out.write(os.urandom(CHUNK))
        out.flush()
        os.fsync(out.fileno())


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on, from the mount table."""
    mounts = psutil.disk_partitions(all=True)
    best = max(
        (m for m in mounts if path.resolve().is_relative_to(m.mountpoint)),
        key=lambda m: len(m.mountpoint),
        default=None,
    )
    return best.fstype if best is not None else "unknown"


def staged_how(staged: StagedFiles, dst: Path) -> str:
    if staged.copied_bytes:
        return "copied"
    if dst in staged.read_only:
        return "hardlinked (read-only to the model)"
    return "cloned (copy-on-write)"


def run(bench: Bench) -> None:
    folder = Path(tempfile.mkdtemp(prefix="staging-", dir=tempfile.gettempdir()))
    try:
        measure(bench, folder)
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


def measure(bench: Bench, folder: Path) -> None:
    src, dst = folder / "source.bin", folder / "copy.bin"
    with bench.console.status("staging: writing 1 GiB of random bytes ..."):
        write_source(src)
    how: dict[str, str] = {}

    def staged_copy(may_link: bool) -> Callable[[], None]:
        def copy() -> None:
            staged = StagedFiles()
            place_file(src, dst, staged, may_link=may_link)
            how[f"place_file(may_link={may_link})"] = staged_how(staged, dst)

        return copy

    methods: dict[str, Callable[[], None]] = {
        "cp": lambda: subprocess.run(["cp", str(src), str(dst)], check=True),
        "place_file(may_link=False)": staged_copy(False),
        "place_file(may_link=True)": staged_copy(True),
    }
    how["cp"] = "copied"
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    with bench.console.status(f"staging: {REPEATS} rounds of cp and place_file ..."):
        for _ in range(REPEATS):
            for name, copy in methods.items():
                dst.unlink(missing_ok=True)
                os.sync()
                start = time.perf_counter()
                copy()
                seconds[name].append(time.perf_counter() - start)
                if dst.stat().st_size != SIZE:
                    bench.note(f"staging: {name} left {dst.stat().st_size} bytes, not {SIZE}")
    dst.unlink(missing_ok=True)
    cp_best = min(seconds["cp"])
    rows = []
    for name, times in seconds.items():
        best = min(times)
        rows.append(
            [
                name,
                how[name],
                f"{best:.3f}",
                f"{statistics.median(times):.3f}",
                f"{SIZE / best / 1e6:,.0f}" + ("" if how[name] == "copied" else " (no copy)"),
                f"{cp_best / best:,.2f}x",
            ]
        )
    filesystem = filesystem_type(folder)
    bench.console.print(
        table(
            f"staging: one 1 GiB file in {folder.parent} ({filesystem}), best of {REPEATS}",
            ["method", "what it did", "best s", "median s", "MB/s (best)", "vs cp"],
            rows,
        )
    )
    copy_share = cp_best / min(seconds["place_file(may_link=False)"])
    bench.console.print(
        table(
            "staging against SPEC.md's quality bar",
            BAR_COLUMNS,
            [
                bar_row(
                    "place_file (a real copy) ≥ 90 % of cp",
                    f"{copy_share:.0%}",
                    copy_share,
                    0.9,
                    at_most=False,
                )
            ],
        )
    )
