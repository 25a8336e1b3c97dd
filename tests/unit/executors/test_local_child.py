"""An attempt child of the local executor does not re-run the server's main module.

Started by the ``simyard`` console script, the server's ``__main__`` is that script,
which imports the whole CLI; a child that re-ran it spent most of its start-up there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any


def report_modules(queue: Any) -> None:
    """Runs in the child: which modules it has."""
    queue.put(sorted(sys.modules))


CONSOLE_LIKE = """\
import sys
from simyard.cli import main  # what the `simyard` console script imports
if __name__ == "__main__":
    import multiprocessing as mp
    from simyard.executors import local
    from tests.unit.executors.test_local_child import report_modules
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(local.FORKSERVER_PRELOAD)
    queue = ctx.Queue()
    child = local._AttemptProcess(target=report_modules, args=(queue,))
    child.start()
    modules = queue.get(timeout=60)
    child.join()
    print("simyard.cli" in modules, "typer" in modules)
"""


def test_an_attempt_child_does_not_import_the_cli_of_a_console_script_server(
    tmp_path: Path,
) -> None:
    script = tmp_path / "simyard"
    script.write_text(textwrap.dedent(CONSOLE_LIKE))
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
