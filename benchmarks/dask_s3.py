"""Scale-out figures: trivial runs through a Dask cluster, and the S3 store against boto3.

``run_s3`` starts a SeaweedFS on loopback and compares ``S3Store`` with plain single-stream
boto3 calls: one 1 GiB file up and down, many 1 KiB files up, and the re-upload of an
unchanged file. ``run_dask`` starts a scheduler, two workers and a second server whose
executor is that cluster, and measures trivial runs like ``submit`` does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import submit
from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, latency_bar, table
from benchmarks.server import BenchServer

MiB = 1 << 20
BIG_SIZE = 1024 * MiB
SMALL_SIZE = 1024
SMALL_COUNT = 10_000
SMALL_FALLBACK = 2_000
BASELINE_LIMIT = 120.0  # seconds the baseline loop of small files may take
PROBE_COUNT = 200  # small files put first to estimate the baseline loop's time
DASK_RUNS = 20
DASK_OVERHEAD_BAR = 0.250
AWS_NAMES = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
]


# -- S3 -----------------------------------------------------------------------------------


@contextmanager
def aws_env(access_key: str, secret_key: str, root: Path) -> Iterator[None]:
    """The SeaweedFS keys in ``os.environ`` (and no other AWS setting); restored afterwards."""
    saved = {name: os.environ.get(name) for name in AWS_NAMES}
    for name in AWS_NAMES:
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Transfer:
    """Bytes or files moved in some seconds."""

    seconds: float
    size: int  # bytes
    files: int = 1

    @property
    def mb_per_s(self) -> float:
        return self.size / MiB / self.seconds

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def random_file(path: Path, size: int) -> None:
    """``size`` random bytes (incompressible, never all-zero) written once."""
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = min(left, 16 * MiB)
            out.write(os.urandom(chunk))
            left -= chunk


def boto_download(client: object, bucket: str, key: str, dest: Path) -> None:
    """One streaming GET, written to ``dest`` in 1 MiB chunks."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]  # type: ignore[attr-defined]
    with open(dest, "wb") as out:
        for chunk in body.iter_chunks(MiB):
            out.write(chunk)


def same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(16 * MiB), fb.read(16 * MiB)
            if ca != cb:
                return False
            if not ca:
                return True


def run_s3(bench: Bench) -> None:
    from tests.seaweed import Seaweed

    from simyard.storage.s3 import S3Store

    root = bench.root / "seaweed"
    root.mkdir(parents=True, exist_ok=True)
    weed = Seaweed(root)
    with aws_env(weed.access_key, weed.secret_key, root):
        try:
            with bench.console.status("s3: starting SeaweedFS ..."):
                weed.start()
                weed.wait_ready()
            store = S3Store(weed.bucket, "simyard", endpoint_url=weed.endpoint_url)
            try:
                measure_s3(bench, weed, store)
            finally:
                store.close()
        finally:
            weed.stop()


def measure_s3(bench: Bench, weed: object, store: object) -> None:
    client = weed.client()  # type: ignore[attr-defined]
    bucket = weed.bucket  # type: ignore[attr-defined]
    data = bench.root / "s3-data"
    data.mkdir(exist_ok=True)
    big = data / "big.bin"
    with bench.console.status("s3: writing 1 GiB of random bytes ..."):
        random_file(big, BIG_SIZE)

    # one large file, up and down
    with bench.console.status("s3: 1 GiB up with single-stream boto3 put_object ..."):

        def baseline_put() -> None:
            with open(big, "rb") as body:
                client.put_object(Bucket=bucket, Key="baseline/big.bin", Body=body)

        base_up = Transfer(timed(baseline_put), BIG_SIZE)
    with bench.console.status("s3: 1 GiB up with S3Store.put ..."):
        before = store.uploaded_bytes  # type: ignore[attr-defined]
        ours_up = Transfer(timed(lambda: store.put("big.bin", big)), BIG_SIZE)  # type: ignore[attr-defined]
        first_bytes = store.uploaded_bytes - before  # type: ignore[attr-defined]
    base_copy, ours_copy = data / "big.baseline", data / "big.simyard"
    with bench.console.status("s3: 1 GiB down with one streaming get_object ..."):
        base_down = Transfer(
            timed(lambda: boto_download(client, bucket, "baseline/big.bin", base_copy)), BIG_SIZE
        )
    with bench.console.status("s3: 1 GiB down with S3Store.get ..."):
        ours_down = Transfer(timed(lambda: store.get("big.bin", ours_copy)), BIG_SIZE)  # type: ignore[attr-defined]
    for copy in (base_copy, ours_copy):
        if not same_bytes(big, copy):
            bench.note(f"s3: the downloaded {copy.name} differs from the uploaded file")
        copy.unlink()

    # re-upload of the unchanged file
    before = store.uploaded_bytes  # type: ignore[attr-defined]
    again_seconds = timed(lambda: store.put("big.bin", big))  # type: ignore[attr-defined]
    again_bytes = store.uploaded_bytes - before  # type: ignore[attr-defined]
    if again_bytes:
        bench.note(f"s3: re-upload of an unchanged 1 GiB file sent {again_bytes} bytes")

    # many small files
    small = data / "small"
    small.mkdir()
    with bench.console.status("s3: probing the baseline loop of small files ..."):
        probe = [small / f"probe-{i:05d}" for i in range(PROBE_COUNT)]
        for path in probe:
            path.write_bytes(os.urandom(SMALL_SIZE))

        def probe_loop() -> None:
            for path in probe:
                client.put_object(Bucket=bucket, Key=f"probe/{path.name}", Body=path.read_bytes())

        per_file = timed(probe_loop) / PROBE_COUNT
    count = SMALL_COUNT if per_file * SMALL_COUNT <= BASELINE_LIMIT else SMALL_FALLBACK
    files = [small / f"f-{i:05d}" for i in range(count)]
    for path in files:
        path.write_bytes(os.urandom(SMALL_SIZE))
    with bench.console.status(f"s3: {count} files of 1 KiB with a put_object loop ..."):

        def baseline_loop() -> None:
            for path in files:
                with open(path, "rb") as body:
                    client.put_object(Bucket=bucket, Key=f"baseline/small/{path.name}", Body=body)

        base_small = Transfer(timed(baseline_loop), count * SMALL_SIZE, count)
    with bench.console.status(f"s3: {count} files of 1 KiB with S3Store.put_many ..."):
        pairs = [(f"small/{path.name}", path) for path in files]
        ours_small = Transfer(
            timed(lambda: store.put_many(pairs)),  # type: ignore[attr-defined]
            count * SMALL_SIZE,
            count,
        )

    show_s3(
        bench,
        [
            ("1 GiB up (MB/s)", ours_up.mb_per_s, base_up.mb_per_s, ours_up, base_up),
            ("1 GiB down (MB/s)", ours_down.mb_per_s, base_down.mb_per_s, ours_down, base_down),
            (
                f"{count} x 1 KiB up (files/s)",
                ours_small.files_per_s,
                base_small.files_per_s,
                ours_small,
                base_small,
            ),
        ],
    )
    bench.console.print(
        f"re-upload of the unchanged 1 GiB file with S3Store.put: {again_seconds:.2f} s, "
        f"{again_bytes} bytes sent (first upload sent {first_bytes} bytes)"
    )
    limit_text = f"{per_file * 1000:.1f} ms per put_object in a {PROBE_COUNT}-file probe"
    if count == SMALL_COUNT:
        bench.console.print(f"small files: {SMALL_COUNT} ({limit_text})")
    else:
        bench.console.print(
            f"small files: {SMALL_FALLBACK}, not {SMALL_COUNT}: the baseline loop would take "
            f"≈ {per_file * SMALL_COUNT:.0f} s > {BASELINE_LIMIT:.0f} s ({limit_text})"
        )


def show_s3(bench: Bench, rows: list[tuple[str, float, float, Transfer, Transfer]]) -> None:
    bench.console.print(
        table(
            "s3: S3Store against plain single-stream boto3, SeaweedFS on loopback "
            "(MB = MiB; seconds in brackets)",
            ["transfer", "simyard", "boto3 baseline", "simyard / baseline"],
            [
                [
                    what,
                    f"{ours:.1f} ({o.seconds:.2f} s)",
                    f"{base:.1f} ({b.seconds:.2f} s)",
                    f"{ours / base:.2f}x",
                ]
                for what, ours, base, o, b in rows
            ],
        )
    )


# -- Dask ---------------------------------------------------------------------------------


def trivial_runs(bench: Bench, server: BenchServer, count: int) -> list[submit.Sample]:
    """A warm-up, then ``count`` trivial runs one after the other through ``server``."""
    samples = []
    with server.api() as api:
        submit.one_sample(bench, api)  # warm-up: the first run unpacks the model
        for _ in range(count):
            sample = submit.one_sample(bench, api)
            if sample is not None:
                samples.append(sample)
    return samples


def figures(samples: list[submit.Sample]) -> tuple[Latency, Latency]:
    return (
        Latency.of([s.to_started for s in samples]),
        Latency.of([s.overhead for s in samples]),
    )


def run_dask(bench: Bench) -> None:
    from tests.daskcluster import DaskCluster

    count = bench.samples(DASK_RUNS)
    root = bench.root / "dask"
    root.mkdir(parents=True, exist_ok=True)
    cluster = DaskCluster(root)
    server = BenchServer(bench.root / "home-dask")
    server.env["SIMYARD_EXECUTOR"] = f"dask://127.0.0.1:{cluster.port}"
    try:
        with bench.console.status("dask: starting a scheduler and two workers ..."):
            cluster.start_scheduler()
            cluster.start_worker("w1")
            cluster.start_worker("w2")
            cluster.wait_for_workers(2)
        with bench.console.status("dask: starting simyard serve on the cluster ..."):
            server.start()
        folder = bench.root / "models-dask" / submit.MODEL
        for rel, text in submit.MODEL_FILES.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        server.add_model(folder)
        with bench.console.status(f"dask: {count} trivial runs, one after the other ..."):
            dask_samples = trivial_runs(bench, server, count)
    finally:
        server.stop()
        for line in server.log_problems()[:20]:
            bench.note(f"dask server log: {line.strip()}")
        cluster.stop()
    if not dask_samples:
        bench.console.print("[red]dask: no trivial run succeeded; nothing to report[/red]")
        return

    local = bench.shared.get("submit_samples")  # nothing stores it yet: measure here
    where = "from the submit scenario"
    if local is None:
        bench.model(submit.MODEL, submit.MODEL_FILES)
        with bench.console.status(f"dask: {count} trivial runs on the local executor ..."):
            local = trivial_runs(bench, bench.server(), count)
        where = "measured here, same N"
    d_started, d_overhead = figures(dask_samples)
    rows = [
        ["Dask: submit → model process started", *d_started.row()],
        ["Dask: end-to-end overhead", *d_overhead.row()],
    ]
    if local:
        l_started, l_overhead = figures(local)
        rows += [
            [f"local ({where}): submit → model process started", *l_started.row()],
            [f"local ({where}): end-to-end overhead", *l_overhead.row()],
        ]
    bench.console.print(
        table(
            "dask: trivial runs one after the other (scheduler + 2 workers of 1 thread on "
            "loopback, SIMYARD_MAX_PARALLEL=2; the client follows each run's events)",
            ["figure", *LATENCY_COLUMNS],
            rows,
        )
    )
    stages: dict[str, list[float]] = {}
    for sample in dask_samples:
        for name, seconds in sample.stages().items():
            stages.setdefault(name, []).append(seconds)
    bench.console.print(
        table(
            "dask: where the time goes (run and task timestamps from the API)",
            ["stage", *LATENCY_COLUMNS],
            [[name, *Latency.of(values).row()] for name, values in stages.items()],
        )
    )
    bench.console.print(
        table(
            "dask against the quality bar",
            BAR_COLUMNS,
            [latency_bar("overhead p50 ≤ 250 ms on Dask", d_overhead.p50, DASK_OVERHEAD_BAR)],
        )
    )
