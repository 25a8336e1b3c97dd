"""A small two-task model used by the CLI and server tests (CSV input, progress, an ERROR)."""

from __future__ import annotations

MODEL = """\
simyard: 1
name: toy
version: "0.1"
parameters:
  days: {type: integer, default: 3, min: 1, max: 100}
  albedo: {type: number, default: 0.06, min: 0, max: 1, warn_max: 0.3}
  site: {type: string, default: "A B"}
  pace: {type: number, default: 0, min: 0, max: 60}
inputs:
  forcing:
    path: input/forcing.csv
    accept: [.csv]
    csv:
      columns:
        day: {type: integer}
        temp: {type: number, min: -60, max: 60}
      min_rows: 1
parameter_file: {path: params.txt, format: keyvalue}
tasks:
  prep:
    command: [python3, prep.py, "{days}"]
    outputs: [prep/]
  simulate:
    needs: [prep]
    command: [python3, sim.py, "{site}"]
    outputs: [results/]
    progress: "day ([0-9]+) of ([0-9]+)"
    error_patterns: ["^ERROR"]
    success_requires: [results/summary.json]
    timeout: 8s
  report:
    needs: [simulate]
    command: [python3, report.py]
    outputs: [report.txt]
results:
  metrics:
    total: {file: results/summary.json, key: total}
"""

FILES = {
    "report.py": """\
        import json
        summary = json.load(open("results/summary.json"))
        open("report.txt", "w").write(f"total {summary['total']} at {summary['site']}\\n")
    """,
    "prep.py": """\
        import os, sys
        os.makedirs("prep")
        rows = open("input/forcing.csv").read().splitlines()[1:]
        open("prep/days.txt", "w").write(sys.argv[1] + "\\n" + str(len(rows)))
    """,
    "sim.py": """\
        import json, os, sys, time
        params = dict(l.split(" = ", 1) for l in open("params.txt").read().splitlines())
        days = int(open("prep/days.txt").read().split()[0])
        os.makedirs("results")
        for d in range(1, days + 1):
            print(f"day {d} of {days}")
            time.sleep(float(params["pace"]))
        if float(params["albedo"]) > 0.9:
            print("ERROR: albedo too high for open water")
            print("  detail line 1")
            sys.exit(2)
        json.dump({"total": days * 10, "site": sys.argv[1]}, open("results/summary.json", "w"))
    """,
}

FORCING = "day,temp\n1,10.5\n2,11.0\n"
