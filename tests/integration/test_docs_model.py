"""A model wrapped from docs/manifest.md alone, driven through the real command line.

The model (``docs_model/``, "POPCARP") is a small legacy-style fish-pond population
model: three plain Python scripts that read a JSON parameter file written by simyard,
a pond table given as an input CSV, and write their results to folders. These tests
run ``python -m simyard models check|test`` exactly as a model owner would.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("error")

REPO = Path(__file__).resolve().parents[2]
MODEL = Path(__file__).resolve().parent / "docs_model"
DATA = Path(__file__).resolve().parent / "docs_model_data"
PONDS = DATA / "ponds.csv"

CHECK_LINE = "✓ popcarp 0.3.1: 8 parameters, 1 inputs, 3 tasks (prepare -> simulate -> report)"


def simyard(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m simyard ARGS`` from the repository root, as a user would.

    TMPDIR points into ``tmp_path`` so the working directories that ``models test``
    keeps after a failure are cleaned up with the test's own folder.
    """
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.run(
        [sys.executable, "-m", "simyard", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


# --- an independent reference implementation of the model's equations -----------


@dataclass
class Pond:
    name: str
    area: float
    fish: float
    stocking: int


@dataclass
class Expected:
    totals: list[float]
    harvests: list[float]
    ponds: dict[str, float]

    @property
    def final(self) -> float:
        return sum(self.ponds.values())

    @property
    def total_harvest(self) -> float:
        return sum(self.harvests)


def read_ponds(path: Path) -> list[Pond]:
    with path.open(newline="", encoding="utf-8") as f:
        return [
            Pond(row["pond"], float(row["area_ha"]), float(row["fish0"]), int(row["stocking"] or 0))
            for row in csv.DictReader(f)
        ]


def reference(
    ponds: list[Pond], *, years: int, rate: float, capacity: float, harvest: float, restock: bool
) -> Expected:
    """N(t+1) = N + r N (1 - N/K) - h N, with K = capacity * area (and restocking first)."""
    totals: list[float] = []
    harvests: list[float] = []
    for _ in range(years):
        total = 0.0
        catch_year = 0.0
        for pond in ponds:
            n = pond.fish + (pond.stocking if restock else 0)
            k = capacity * pond.area
            catch = harvest * n
            n = max(n + rate * n * (1.0 - n / k) - catch, 0.0)
            pond.fish = n
            total += n
            catch_year += catch
        totals.append(total)
        harvests.append(catch_year)
    return Expected(totals, harvests, {p.name: p.fish for p in ponds})


def metric(stdout: str, name: str) -> float:
    """The value of a metric as `models test` prints it: ``  name = value``."""
    for line in stdout.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key == name:
            return float(value)
    raise AssertionError(f"metric {name} not printed in:\n{stdout}")


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- check ---------------------------------------------------------------------


def test_check_prints_one_line_summary(tmp_path: Path) -> None:
    proc = simyard(tmp_path, "models", "check", MODEL)
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.splitlines() == [CHECK_LINE]


# --- a good run ----------------------------------------------------------------


def test_run_lands_outputs_per_task_with_computed_values(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = simyard(
        tmp_path,
        "models",
        "test",
        MODEL,
        "-i",
        f"ponds={PONDS}",
        "-p",
        "years=6",
        "-p",
        "growth_rate=0.55",
        "-p",
        "harvest= 0.2 ",  # spaces around a number are ignored
        "-p",
        "scenario=restock",
        "-p",
        "start=2010-01-01",
        "-p",
        "site=AB-123",
        "-o",
        out,
    )
    assert proc.returncode == 0, output_of(proc)
    assert "Run succeeded." in proc.stdout

    expected = reference(
        read_ponds(PONDS), years=6, rate=0.55, capacity=800.0, harvest=0.2, restock=True
    )

    # prepare: its folder output, including the JSON parameter file simyard wrote
    deck = (out / "prepare" / "prep" / "ponds.dat").read_text().splitlines()
    assert deck[0].split() == ["POND", "AREA", "N0", "STOCK"]
    assert [line.split()[0] for line in deck[1:]] == ["P1", "P2", "P3"]
    params_text = (out / "prepare" / "prep" / "params_used.json").read_text()
    assert json.loads(params_text) == {
        "years": 6,
        "growth_rate": 0.55,
        "capacity": 800.0,
        "harvest": 0.2,
        "scenario": "restock",
        "site": "AB-123",
        "start": "2010-01-01",
        "verbose": False,
    }
    assert '\n  "years": 6,\n' in params_text  # "indented by 2", in manifest order
    assert '"capacity": 800.0' in params_text  # a number parameter is written as a real

    # simulate: a folder and a glob
    summary = json.loads((out / "simulate" / "results" / "summary.json").read_text())
    assert summary["site"] == "AB-123"
    assert summary["scenario"] == "restock"
    assert summary["totals"]["final_fish"] == pytest.approx(expected.final, abs=1e-3)
    assert summary["totals"]["harvest"] == pytest.approx(expected.total_harvest, abs=1e-3)
    for name, fish in expected.ponds.items():
        assert summary["ponds"][name] == pytest.approx(fish, abs=1e-3)

    table = read_table(out / "simulate" / "results" / "population.csv")
    assert [row["calendar_year"] for row in table] == [str(y) for y in range(2010, 2016)]
    assert [float(row["total"]) for row in table] == pytest.approx(expected.totals, abs=1e-3)
    assert [float(row["harvest"]) for row in table] == pytest.approx(expected.harvests, abs=1e-3)

    states = sorted(p.name for p in (out / "simulate" / "states").iterdir())
    assert states == [f"year_{y:04d}.dat" for y in range(1, 7)]
    last_state = (out / "simulate" / "states" / "year_0006.dat").read_text().split()
    assert float(last_state[last_state.index("P3") + 1]) == pytest.approx(
        expected.ponds["P3"], abs=1e-3
    )

    # report: needs simulate, so it saw simulate's declared outputs
    report = (out / "report" / "report" / "report.txt").read_text().splitlines()
    assert report[0] == "POPCARP report for site AB-123 (restock)"
    assert report[1] == "years simulated: 6"
    assert report[2] == f"final population: {expected.final:.3f}"
    assert report[4] == "last calendar year: 2015"

    # each task's log next to its folder; progress lines are the model's own
    simulate_log = (out / "simulate.log").read_text()
    assert "year 6 of 6" in simulate_log
    assert "POPCARP popsim: 3 ponds, 6 years, site AB-123" in simulate_log
    assert "prepared 3 ponds" in (out / "prepare.log").read_text()

    # metrics: from a JSON key, a pattern in an output file and a pattern in a log
    assert metric(proc.stdout, "final_fish") == pytest.approx(expected.final, abs=1e-3)
    peak = max(range(6), key=lambda i: expected.totals[i]) + 1
    assert metric(proc.stdout, "peak_year") == peak
    assert metric(proc.stdout, "harvested") == pytest.approx(expected.total_harvest, abs=1e-3)


def test_defaults_apply_and_warnings_do_not_refuse(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = simyard(
        tmp_path, "models", "test", MODEL, "-i", f"ponds={PONDS}", "-p", "growth_rate=2", "-o", out
    )
    assert proc.returncode == 0, output_of(proc)
    assert "params.growth_rate: 2 is above the usual maximum 1.5 (allowed)" in output_of(proc)

    expected = reference(
        read_ponds(PONDS), years=10, rate=2.0, capacity=800.0, harvest=0.1, restock=False
    )
    summary = json.loads((out / "simulate" / "results" / "summary.json").read_text())
    assert summary["scenario"] == "steady"
    assert summary["site"] == "FP-001"
    assert summary["years"] == 10
    assert summary["totals"]["final_fish"] == pytest.approx(expected.final, abs=1e-3)


# --- refused input: exit 2, nothing runs -----------------------------------------


def test_out_of_range_parameters_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = simyard(
        tmp_path,
        "models",
        "test",
        MODEL,
        "-i",
        f"ponds={PONDS}",
        "-p",
        "years=500",
        "-p",
        "harvest=1.5",
        "-p",
        "site=fp-1",
        "-p",
        "start=2024-02-30",
        "-p",
        "colour=red",
        "-o",
        out,
    )
    text = output_of(proc)
    assert proc.returncode == 2, text
    assert "params.years: must be at most 200 (got 500)" in text
    assert "params.harvest: must be at most 1 (got 1.5)" in text
    assert "params.site: must match the pattern ^[A-Z]{2}-[0-9]{3}$" in text
    assert "params.start: is not a real date: 2024-02-30" in text
    assert "params.colour: unknown parameter" in text
    assert "nothing was run" in text
    assert "running" not in proc.stdout
    assert not out.exists()


def test_bad_csv_is_refused_naming_file_row_and_column(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = simyard(
        tmp_path, "models", "test", MODEL, "-i", f"ponds={DATA / 'ponds_bad.csv'}", "-o", out
    )
    text = output_of(proc)
    assert proc.returncode == 2, text
    # rows are numbered as a spreadsheet shows them: the header is row 1
    assert "ponds_bad.csv: row 3, column area_ha: -0.8 is below min 0.01" in text
    assert "ponds_bad.csv: row 4, column fish0:" in text
    assert "'many'" in text
    assert "ponds_bad.csv: row 4, column kind:" in text
    assert "inputs.ponds" in text
    assert "nothing was run" in text
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ponds.tsv", "pond,area_ha,fish0\nP1,1,2\n", "ponds.tsv: extension .tsv not accepted"),
        ("ponds.csv", "pond,fish0\nP1,10\n", "ponds.csv: missing column 'area_ha'"),
        ("ponds.csv", "pond,area_ha,fish0\n", "ponds.csv: 0 data rows, at least 1 required"),
        (
            "ponds.csv",
            "pond,area_ha,fish0\nP1,1\n",
            "ponds.csv: row 2 has 2 fields, the header has 3",
        ),
        (
            "ponds.csv",
            "pond,area_ha,fish0,area_ha\nP1,1,2,3\n",
            "ponds.csv: column 'area_ha' appears 2 times",
        ),
    ],
)
def test_malformed_pond_tables_are_refused(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    table = tmp_path / name
    table.write_text(content, encoding="utf-8")
    proc = simyard(tmp_path, "models", "test", MODEL, "-i", f"ponds={table}")
    assert proc.returncode == 2, output_of(proc)
    assert f"inputs.ponds: {message}" in proc.stderr


def test_missing_required_input_is_refused(tmp_path: Path) -> None:
    proc = simyard(tmp_path, "models", "test", MODEL)
    assert proc.returncode == 2, output_of(proc)
    assert "inputs.ponds: is required" in output_of(proc)


# --- valid but bad input: the model itself fails ----------------------------------


def test_overstocked_pond_fails_with_the_models_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = simyard(
        tmp_path,
        "models",
        "test",
        MODEL,
        "-i",
        f"ponds={DATA / 'ponds_overstocked.csv'}",
        "-o",
        out,
    )
    text = output_of(proc)
    assert proc.returncode == 1, text
    # the model exits 0 after printing ERROR: the error pattern fails the task anyway
    assert "Task 'simulate' failed: the model reported an error" in " ".join(text.split())
    error_line = "ERROR: pond P2 overstocked: 99999 fish on 1.00 ha (limit 4000)"
    quoted = text[text.index("The model said:") :]
    assert error_line in quoted
    # ... with the two lines after it
    assert "check the fish0 column of the pond table" in quoted
    assert "run aborted before year 1" in quoted
    assert "report skipped" in proc.stdout
    assert "Run failed" in proc.stdout

    # the downstream task never ran; the failed task's outputs and the on_failure
    # diagnostics are copied to OUTDIR/simulate/
    assert (out / "prepare" / "prep" / "ponds.dat").is_file()
    assert not (out / "report").exists()
    assert not (out / "simulate" / "results" / "summary.json").exists()
    assert (
        "aborted: pond P2 overstocked" in (out / "simulate" / "results" / "popsim.log").read_text()
    )
    diagnostics = out / "simulate" / "diagnostics"
    assert sorted(p.name for p in diagnostics.iterdir()) == [
        "params.json",
        "ponds.dat",
        "popsim.log",
    ]
    assert json.loads((diagnostics / "params.json").read_text())["capacity"] == 800.0


# --- importing a parameter file of the model's own format (-P) --------------------


def test_param_file_prefills_the_run_and_p_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = simyard(
        tmp_path,
        "models",
        "test",
        MODEL,
        "-i",
        f"ponds={PONDS}",
        "-P",
        DATA / "old_run.json",
        "-p",
        "site=ZZ-777",
        "-o",
        out,
    )
    assert proc.returncode == 0, output_of(proc)

    # old_run.json: years 4, growth_rate 0.5, scenario restock, site XY-042 (overridden)
    expected = reference(
        read_ponds(PONDS), years=4, rate=0.5, capacity=800.0, harvest=0.1, restock=True
    )
    used = json.loads((out / "prepare" / "prep" / "params_used.json").read_text())
    assert used["years"] == 4
    assert used["growth_rate"] == 0.5
    assert used["scenario"] == "restock"
    assert used["site"] == "ZZ-777"
    assert used["capacity"] == 800.0  # not in the file: the default

    report = (out / "report" / "report" / "report.txt").read_text().splitlines()
    assert report[0] == "POPCARP report for site ZZ-777 (restock)"
    assert report[1] == "years simulated: 4"
    assert report[2] == f"final population: {expected.final:.3f}"
    assert metric(proc.stdout, "final_fish") == pytest.approx(expected.final, abs=1e-3)


def test_param_file_unknown_names_warn_and_case_is_ignored(tmp_path: Path) -> None:
    old = tmp_path / "legacy.json"
    old.write_text(json.dumps({"YEARS": 3, "Growth_Rate": 0.25, "colour": "red"}))
    out = tmp_path / "out"
    proc = simyard(tmp_path, "models", "test", MODEL, "-i", f"ponds={PONDS}", "-P", old, "-o", out)
    assert proc.returncode == 0, output_of(proc)
    assert "param_file.colour: legacy.json: not a parameter of this model" in output_of(proc)
    used = json.loads((out / "prepare" / "prep" / "params_used.json").read_text())
    assert used["years"] == 3
    assert used["growth_rate"] == 0.25


def test_param_file_with_a_wrong_value_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "broken.json"
    old.write_text(json.dumps({"years": "lots", "harvest": 0.2}))
    proc = simyard(tmp_path, "models", "test", MODEL, "-i", f"ponds={PONDS}", "-P", old)
    text = output_of(proc)
    assert proc.returncode == 2, text
    assert "broken.json" in text
    assert "years" in text
    assert "nothing was run" in text
