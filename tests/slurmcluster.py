"""A real single-node Slurm cluster on loopback: munged, slurmctld and slurmd of its own.

Debian's ``slurm-wlm`` and ``munge``, run as root with a generated ``slurm.conf``
(``proctrack/linuxproc``, ``task/none``: no cgroups needed), a munge key and socket of
its own, and the node's real CPUs and memory. Clients (``sbatch``, ``squeue``,
``scancel``) find it through ``SLURM_CONF`` in :attr:`SlurmCluster.env`. At teardown
every process started under this configuration (daemons, job steps, the dask workers in
jobs) is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.integration.conftest import free_port

NODE = "simyard-node"

CONF = """\
ClusterName=simyard-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={short}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={spool}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=2
KillWait=5
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def available() -> bool:
    return all(shutil.which(p) for p in ("munged", "slurmctld", "slurmd", "sbatch", "squeue"))


@dataclass
class SlurmCluster:
    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # munged's socket and slurmstepd's (one per job step, in the spool folder) are Unix
    # sockets, whose paths are at most 108 bytes: below pytest's tmp_path (longer under
    # xdist) a job's step failed at start, so they live in a short folder of their own.
    short: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp")))

    @property
    def spool(self) -> Path:
        return self.short / "spool"

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env}
        with open(self.root / f"{name}.out", "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        munge = self.short / "munge"
        for folder in (munge, self.spool, self.root / "state"):
            folder.mkdir(parents=True, mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        memory = psutil.virtual_memory().total // 2**20 - 512
        self.conf.write_text(CONF.format(
            host=socket.gethostname(), ctld_port=free_port(), slurmd_port=free_port(),
            root=self.root, short=self.short, spool=self.spool, node=NODE,
            cpus=os.cpu_count() or 1, memory=memory,
        ))  # fmt: skip
        self._spawn(
            "munged", "munged", "--foreground", "--force", f"--socket={munge}/munge.socket",
            f"--key-file={key}", f"--pid-file={munge}/munged.pid",
            f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed",
        )  # fmt: skip
        self._wait(lambda: (munge / "munge.socket").exists(), "munged")
        self._spawn("slurmctld", "slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-N", NODE, "-f", str(self.conf))
        self._wait(self._node_idle, "slurmd (node idle)")

    def _node_idle(self) -> bool:
        done = self.run("sinfo", "-h", "-N", "-o", "%T")
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def _wait(self, check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited: see {self.root}")
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not come up: see {self.root}")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip

    def jobs(self) -> list[tuple[str, str]]:
        """(job id, state) of every job the cluster knows, as ``squeue`` shows them."""
        done = self.run("squeue", "-h", "-o", "%i %T")
        assert done.returncode == 0, done.stderr
        return [tuple(line.split()[:2]) for line in done.stdout.splitlines() if line.strip()]  # type: ignore[misc]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--user", "root")
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Job steps and the workers in jobs left their daemons' sessions: find the workers
        # by the configuration they were started under, and the job steps (slurmstepd
        # clears its environment) by the log files of this cluster they hold open.
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid == os.getpid():
                    continue
                if (proc.info["cmdline"] or [""])[0].startswith("slurmstepd"):
                    ours = (str(self.root), str(self.short))
                    if any(f.path.startswith(ours) for f in proc.open_files()):
                        proc.kill()
                elif proc.environ().get("SLURM_CONF") == str(self.conf):
                    proc.kill()
        shutil.rmtree(self.short, ignore_errors=True)
