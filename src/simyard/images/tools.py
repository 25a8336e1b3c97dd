"""The OCI tools simyard drives: Debian's ``skopeo`` (copy, inspect) and ``umoci`` (unpack).

Both are well-kept, daemonless and rootless: ``skopeo`` reads every image format a model
owner has (``docker save``, ``podman save``, an OCI layout, a registry) and writes one
form, an OCI layout; ``umoci raw unpack --rootless`` applies the layers (whiteouts,
hard links, modes) the way the OCI image spec says, without root.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from simyard.errors import SimyardError

INSTALL_HINT = "install skopeo and umoci (Debian/Ubuntu: apt-get install skopeo umoci)"


class ImageToolMissing(SimyardError):
    """``skopeo`` or ``umoci`` is not installed on this machine."""


class ImageToolFailed(SimyardError):
    """``skopeo`` or ``umoci`` ran and failed; the message holds what it said."""


def find_tool(name: str) -> str:
    """The path of ``name`` (``skopeo`` or ``umoci``); ImageToolMissing with the install hint."""
    found = shutil.which(name)
    if found is None:
        raise ImageToolMissing(f"{name} is not installed on this machine: {INSTALL_HINT}")
    return found


def run_tool(argv: list[str], *, timeout: float, cwd: Path | None = None) -> str:
    """Run a tool (never through a shell); its standard output, or ImageToolFailed."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageToolFailed(f"{Path(argv[0]).name} took longer than {timeout:g} s") from None
    except OSError as exc:
        raise ImageToolFailed(f"cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        last = said[-1] if said else f"exit code {done.returncode}"
        raise ImageToolFailed(f"{Path(argv[0]).name} failed: {last[-500:]}")
    return done.stdout
