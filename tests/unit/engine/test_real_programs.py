"""Real programs as they are: exit codes above 128, signals, and their ordered output."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simyard.engine import (
    EngineOptions,
    FailureKind,
    TaskOutcome,
    TaskRequest,
    TaskResult,
    run_task,
)
from simyard.engine.sandbox import find_bwrap
from simyard.manifest import load_manifest
from simyard.manifest.params import validate_parameters
from simyard.manifest.results import read_metrics
from tests.conftest import MakeModel

HEAD = 'simyard: 1\nname: t\nversion: "1"\n'
SANDBOXES = [
    "none",
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed"),
    ),
]

Run = Callable[..., TaskResult]


@pytest.fixture
def run(make_model: MakeModel, tmp_path: Path, open_work_root: Path) -> Run:
    """Run task ``run`` of a model built from a manifest body and files."""

    def go(
        body: str,
        files: dict[str, str | bytes] | None = None,
        *,
        sandbox: str = "auto",
        params: dict[str, Any] | None = None,
        executables: tuple[str, ...] = (),
    ) -> TaskResult:
        model_dir = make_model(HEAD + body, files)
        for name in executables:
            (model_dir / name).chmod(0o755)
        manifest = load_manifest(model_dir)
        check = validate_parameters(manifest, params or {})
        assert check.ok, check.problems
        request = TaskRequest(
            manifest=manifest,
            model_dir=model_dir,
            task="run",
            params=check.values,
            workdir=open_work_root / model_dir.name,
            log_path=tmp_path / "logs" / f"{model_dir.name}.log",
        )
        return run_task(request, EngineOptions(sandbox=sandbox, kill_grace=0.5))

    return go


def sh_task(script: str) -> str:
    return f"tasks:\n  run:\n    command: [sh, -c, {script!r}]\n"


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("code", [201, 137, 153])
def test_an_exit_code_above_128_is_an_exit_code_not_a_signal(
    run: Run, sandbox: str, code: int
) -> None:
    result = run(sh_task(f"echo working; exit {code}"), sandbox=sandbox)
    assert result.outcome is TaskOutcome.failed
    assert (result.exit_code, result.signal) == (code, None)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.model_error  # 153 is no file-size limit
    assert f"It exited with code {code}." in result.failure.summary("run")


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_program_killed_by_a_signal_has_a_signal_and_no_exit_code(run: Run, sandbox: str) -> None:
    result = run(sh_task("echo about to die; kill -TERM $$"), sandbox=sandbox)
    assert (result.exit_code, result.signal) == (None, 15)
    assert result.failure is not None
    assert "It was killed by SIGTERM." in result.failure.summary("run")


CCX_BAD_INPUT = """*NODE
1,0,0,0
2,1,0,0
*ELEMENT,TYPE=T3D2,ELSET=E
1,1,2
*STEP
*STATIC
*END STEP
"""


@pytest.mark.skipif(shutil.which("ccx") is None, reason="CalculiX (calculix-ccx) is not installed")
def test_calculix_error_exits_201_and_is_reported_as_exit_code_201(run: Run) -> None:
    body = 'tasks:\n  run:\n    command: [ccx, -i, beam]\n    error_patterns: ["^ \\\\*ERROR"]\n'
    result = run(body, {"beam.inp": CCX_BAD_INPUT})
    assert (result.exit_code, result.signal) == (201, None)
    assert result.failure is not None
    summary = result.failure.summary("run")
    assert "It exited with code 201." in summary
    assert "*ERROR" in summary
    assert "signal" not in summary


GMX_FATAL = """echo 'Reading file topol.top'
echo '-------------------------------------------------------'
echo 'Program:     gmx grompp, version 2023.3'
echo 'ERROR 1 [file topol.top, line 8]:'
echo 'ERROR 2 [file topol.top, line 9]:'
echo '  Atomtype OW not found'
echo 'There were 2 errors in input file(s)'
echo 'Fatal error:'
echo 'For more information and tips for troubleshooting, please check the GROMACS'
exit 1
"""


def test_consecutive_error_lines_are_quoted_once_in_one_merged_quote(run: Run) -> None:
    body = (
        "tasks:\n  run:\n    command: [sh, grompp.sh]\n"
        '    error_patterns: ["^ERROR", "^Fatal error"]\n'
    )
    result = run(body, {"grompp.sh": GMX_FATAL})
    assert result.failure is not None
    assert result.failure.error_lines == [
        "ERROR 1 [file topol.top, line 8]:\nERROR 2 [file topol.top, line 9]:\n"
        "  Atomtype OW not found\nThere were 2 errors in input file(s)",
        "Fatal error:\nFor more information and tips for troubleshooting, please check the GROMACS",
    ]
    said = result.failure.summary("run").split("Last lines of its log:")[0]
    assert said.count("ERROR 2 [file topol.top, line 9]:") == 1


XFOIL_SESSION = "PLOP\nG F\n\nNACA 2412\nOPER\nALFA 4\n\nQUIT\n"  # no graphics


@pytest.mark.skipif(shutil.which("xfoil") is None, reason="XFOIL (xfoil) is not installed")
def test_xfoil_reads_its_commands_from_stdin_and_its_crash_keeps_the_log_in_order(
    run: Run,
) -> None:
    # Debian's XFOIL 6.99 traps a floating-point exception in OPER: a real signal death
    body = "tasks:\n  run:\n    command: [xfoil]\n    stdin: session.txt\n"
    result = run(body, {"session.txt": XFOIL_SESSION})
    log = result.log_path.read_text()
    assert "Max thickness" in log  # NACA 2412 was read from stdin
    assert (result.exit_code, result.signal) == (None, 8)
    assert result.failure is not None
    assert "It was killed by SIGFPE." in result.failure.summary("run")
    # stdout (Fortran unit 6) arrives before the runtime's message on stderr, not lost after it
    assert log.index("Calculating unit vorticity") < log.index("Program received signal SIGFPE")


def test_a_missing_stdin_file_fails_the_task_naming_the_file(run: Run) -> None:
    result = run("tasks:\n  run:\n    command: [cat]\n    stdin: in/commands.txt\n")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.model_error
    assert "the stdin file 'in/commands.txt' is not in the working directory" in (
        result.failure.reason
    )


INTERLEAVED_C = r"""#include <stdio.h>
int main(void) {
    for (int i = 1; i <= 3; i++) {
        printf("step %d\n", i);
        fprintf(stderr, "warning %d\n", i);
    }
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_with_tty_a_c_program_s_stdout_and_stderr_stay_in_the_order_written(
    run: Run, sandbox: str, tmp_path: Path
) -> None:
    program = tmp_path / "interleave"
    source = tmp_path / "interleave.c"
    source.write_text(INTERLEAVED_C)
    subprocess.run(["cc", "-o", program, source], check=True)
    body = "tasks:\n  run:\n    command: [./interleave]\n    tty: true\n"
    files = {"interleave": program.read_bytes()}
    result = run(body, files, sandbox=sandbox, executables=("interleave",))
    assert result.succeeded, result.failure
    lines = result.log_path.read_text().splitlines()
    assert lines == ["step 1", "warning 1", "step 2", "warning 2", "step 3", "warning 3"]


FOAM_LIKE = """end="$1"
for t in 0.1 0.2 "$end"; do
  mkdir -p "$t" "postProcessing/forceCoeffs/$t"
  echo "Time = $t"
  printf 'Time Cd\\n%s 0.%s\\n' "$t" "${t#0.}" > "postProcessing/forceCoeffs/$t/coefficient.dat"
done
echo "uniform (1 0 0)" > "$end/U"
"""
FOAM_MANIFEST = """parameters:
  end_time: {type: number, default: 0.5}
tasks:
  run:
    command: [sh, solve.sh, "{end_time}"]
    outputs: ["{end_time}/", postProcessing/]
    success_requires: ["{end_time}/U"]
results:
  metrics:
    cd: {file: "postProcessing/forceCoeffs/*/coefficient.dat", pattern: "\\\\n[0-9.]+ ([0-9.]+)"}
"""


def test_placeholders_in_outputs_and_success_requires_and_a_result_glob(run: Run) -> None:
    result = run(FOAM_MANIFEST, {"solve.sh": FOAM_LIKE}, params={"end_time": 0.5})
    assert result.succeeded, result.failure
    paths = [o.path for o in result.outputs]
    assert "0.5/U" in paths
    assert "0.1/U" not in paths
    manifest = load_manifest(result.workdir)
    files = {o.path: o.source for o in result.outputs}
    metrics = read_metrics(manifest, files, {}, {"end_time": 0.5})
    assert metrics == {"cd": 0.5}  # from 0.5/, the last time folder, not 0.2/

    late = run(FOAM_MANIFEST.replace("{end_time}/U", "{end_time}/p"), {"solve.sh": FOAM_LIKE})
    assert late.failure is not None
    assert "It ended without writing '0.5/p'." in late.failure.reason


ENV_MANIFEST = """parameters:
  solver: {type: string, default: icoFoam}
env: {WM_PROJECT_DIR: "{workdir}/openfoam", FOAM_SOLVER: "{solver}", FOAM_MODE: shared}
tasks:
  run:
    command: [sh, -c, 'echo "$WM_PROJECT_DIR|$FOAM_SOLVER|$FOAM_MODE|${{FOAM_MISSING-unset}}"']
    env: {FOAM_MODE: own}
"""


def test_the_manifest_env_reaches_every_task_with_workdir_filled(run: Run) -> None:
    result = run(ENV_MANIFEST)
    assert result.succeeded, result.failure
    line = result.log_path.read_text().strip()
    assert line == f"{result.workdir}/openfoam|icoFoam|own|unset"


def test_progress_with_a_total_from_a_parameter_reads_time_out_of_end_time(run: Run) -> None:
    body = (
        "parameters:\n  end_time: {type: number, default: 0.5}\n"
        "tasks:\n  run:\n    command: [sh, solve.sh]\n"
        '    progress: {pattern: "^Time = ([0-9.eE+-]+)$", total: "{end_time}"}\n'
    )
    script = "for t in 0.1 0.2 0.3; do echo \"Time = $t\"; echo 'Courant 0.4'; done\nexit 1\n"
    result = run(body, {"solve.sh": script})
    assert result.progress == pytest.approx(60.0)  # 0.3 of 0.5, not "0.3 %"


FOAM_WARNING = """echo 'Time = 0.1'
echo '--> FOAM Warning : From function Foam::fvSolution::read'
echo '    Convergence failed for p after 1000 iterations'
echo 'Time = 0.2'
echo 'ExecutionTime = 1.2 s'
"""


def test_warning_lines_are_kept_and_the_task_goes_on(run: Run) -> None:
    body = (
        "tasks:\n  run:\n    command: [sh, solve.sh]\n"
        '    warning_patterns: ["FOAM Warning", "Convergence failed"]\n'
        '    error_patterns: ["FOAM FATAL"]\n'
    )
    result = run(body, {"solve.sh": FOAM_WARNING})
    assert result.succeeded, result.failure
    assert result.warnings == [
        "--> FOAM Warning : From function Foam::fvSolution::read",
        "    Convergence failed for p after 1000 iterations",
    ]


CASE_MANIFEST = """parameters:
  end_time: {type: number, default: 0.5}
  nu: {type: number, default: 1.0e-5}
parameter_files:
  - {path: system/controlDict, format: template, template: templates/controlDict.j2}
  - {path: constant/transportProperties, format: template, template: templates/transport.j2}
  - {path: case.json, format: json}
tasks:
  run:
    command: [sh, -c, "cat system/controlDict constant/transportProperties case.json"]
"""


def test_several_parameter_files_each_get_the_run_s_values(run: Run) -> None:
    files = {
        "templates/controlDict.j2": "endTime     {{ end_time }};\n",
        "templates/transport.j2": "nu          [0 2 -1 0 0 0 0] {{ nu }};\n",
    }
    result = run(CASE_MANIFEST, files, params={"end_time": 2.0})
    assert result.succeeded, result.failure
    log = result.log_path.read_text()
    assert "endTime     2.0;\nnu          [0 2 -1 0 0 0 0] 1e-05;\n" in log
    assert '"end_time": 2.0' in log
