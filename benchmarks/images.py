"""Model images: submit → model started, for a model in an OCI image (first use on the
worker and warm) and the same model without one.

The images are made here, with no registry: the host's ``dash`` and ``date`` and the
libraries they load, in a fresh ``umoci`` layout written as an ``oci-archive`` by
``skopeo``. A first use is measured on a model of its own (a new digest each): the
worker fetches the blobs, checks their sha256 and unpacks the image into its cache.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, bar_row, table
from benchmarks.submit import model_times, wait_final

COLD_RUNS = 5
WARM_RUNS = 30
TASK = "stamp"
COMMAND = ["sh", "-c", 'date "+start %s.%N"; date "+end %s.%N"']
PROGRAMS = ("/bin/dash", "/usr/bin/date")


def manifest(name: str, image: bool) -> str:
    env = "environment:\n  image: oci-archive:env/image.tar\n" if image else ""
    command = ", ".join(f"'{a}'" for a in COMMAND)
    return (
        f'simyard: 1\nname: {name}\nversion: "1"\ntasks:\n  {TASK}:\n'
        f"    command: [{command}]\n{env}"
    )


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def build_image(dest: Path, marker: str) -> None:
    """An oci-archive at ``dest`` holding the host's dash and date (``/bin/sh`` is dash)."""
    work = dest.parent / ".build"
    shutil.rmtree(work, ignore_errors=True)
    layout, bundle = work / "layout", work / "bundle"
    _run("umoci", "init", "--layout", layout)
    _run("umoci", "new", "--image", f"{layout}:t")
    _run("umoci", "unpack", "--rootless", "--image", f"{layout}:t", bundle)
    rootfs = bundle / "rootfs"
    for program in PROGRAMS:
        listed = subprocess.run(["ldd", program], capture_output=True, text=True).stdout
        for path in [program, *re.findall(r"(/\S+) \(0x", listed)]:
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(path).resolve(), target)
    (rootfs / "bin" / "sh").symlink_to("dash")
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "marker").write_text(marker)
    _run("umoci", "repack", "--image", f"{layout}:t", bundle)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run("skopeo", "--insecure-policy", "copy", "-q", f"oci:{layout}:t", f"oci-archive:{dest}")
    shutil.rmtree(work)


def add(bench: Bench, name: str, *, image: bool) -> None:
    folder = bench.root / "models" / name
    folder.mkdir(parents=True)
    (folder / "simyard.yaml").write_text(manifest(name, image))
    if image:
        build_image(folder / "env" / "image.tar", name)
    bench.server().add_model(folder)


def started_after(bench: Bench, api: httpx.Client, model: str) -> float | None:
    """Seconds from POST /runs to the model's first line; None (noted) when it failed."""
    submitted = time.time()
    response = api.post("/runs", json={"model": model, "params": {}})
    if response.status_code != 201:
        bench.note(f"images: POST /runs answered {response.status_code}: {response.text[:200]}")
        return None
    run = wait_final(api, int(response.json()["id"]))
    if run is None or run["state"] != "succeeded":
        bench.note(f"images: a run of {model} did not succeed: {run and run['error']}")
        return None
    log = api.get(f"/runs/{run['id']}/logs/{TASK}").text
    try:
        start, _end = model_times(log)
    except (KeyError, ValueError):
        bench.note(f"images: {model}'s log has no start line: {log[:200]!r}")
        return None
    return start - submitted


def run(bench: Bench) -> None:
    if not all(shutil.which(t) for t in ("umoci", "skopeo", "bwrap")):
        bench.console.print("[yellow]images: needs umoci, skopeo and bubblewrap; skipped[/yellow]")
        return
    warm_runs = bench.samples(WARM_RUNS)
    with bench.console.status("images: building and registering the image models ..."):
        add(bench, "bench-plain", image=False)
        add(bench, "bench-image", image=True)
        for i in range(COLD_RUNS):
            add(bench, f"bench-image-cold{i}", image=True)
    with bench.server().api() as api, bench.console.status("images: runs ..."):
        started_after(bench, api, "bench-plain")  # warm-up: the bundle caches
        cold = [started_after(bench, api, f"bench-image-cold{i}") for i in range(COLD_RUNS)]
        started_after(bench, api, "bench-image")  # its first use
        warm, plain = [], []
        for _ in range(warm_runs):  # interleaved, so both see the same machine
            warm.append(started_after(bench, api, "bench-image"))
            plain.append(started_after(bench, api, "bench-plain"))
    figures = {
        "no image": [s for s in plain if s is not None],
        "image, warm (unpacked in the worker's cache)": [s for s in warm if s is not None],
        "image, first use on the worker (fetch, verify, unpack)": [
            s for s in cold if s is not None
        ],
    }
    if not all(figures.values()):
        bench.console.print("[red]images: some runs failed; see the findings[/red]")
        return
    latencies = {how: Latency.of(values) for how, values in figures.items()}
    bench.console.print(
        table(
            "images: submit → model started (local executor, bubblewrap; a tiny image)",
            ["how", *LATENCY_COLUMNS],
            [[how, *latency.row()] for how, latency in latencies.items()],
        )
    )
    extra = (
        latencies["image, warm (unpacked in the worker's cache)"].p50 - latencies["no image"].p50
    )
    bench.console.print(
        table(
            "images against SPEC.md's quality bars",
            BAR_COLUMNS,
            [
                bar_row(
                    "warm image p50 within 10 ms of no image",
                    f"{extra * 1000:+.1f}",
                    extra,
                    0.010,
                    at_most=True,
                )
            ],
        )
    )
