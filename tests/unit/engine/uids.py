"""Waiting for a process started by ``setpriv`` to run as the uid it was given."""

from __future__ import annotations

import subprocess
import time

import psutil


def runs_as(proc: subprocess.Popen[bytes], uid: int, within: float = 5.0) -> bool:
    """Whether ``proc`` runs as ``uid`` within ``within`` seconds. Popen returns once
    ``setpriv`` has started, as root: it switches to the uid a moment later."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if psutil.Process(proc.pid).uids().real == uid:
            return True
        time.sleep(0.01)
    return False
