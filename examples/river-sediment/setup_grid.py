"""Step 1 of the river sediment model: build the computational grid from the cross-sections.

Usage: python3 setup_grid.py

Reads  sediment.nml, and the surveyed cross-sections: every *.csv below
       input/sections/ (the unpacked upload), or data/default_sections.csv when none
       was uploaded. Columns: km, width (m), depth (m), bed_level (m a.s.l.).
Writes grid/grid.dat   one line per section: km, spacing to the previous section (m),
                       width, initial depth, bed level, water level
"""

import csv
import glob
import itertools
import os

from sedcore import fail, read_settings, write_columns

UPLOADED = "input/sections"
DEFAULT = "data/default_sections.csv"
COLUMNS = ("km", "width", "depth", "bed_level")


def read_sections(paths):
    """Every section of every file, checked: positive width and depth, distinct km."""
    sections = []
    for path in paths:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                fail(
                    f"{path}: missing column(s) {', '.join(missing)}",
                    f"a cross-section file needs the columns {', '.join(COLUMNS)}",
                )
            for line, record in enumerate(reader, start=2):
                try:
                    km, width, depth, bed = (float(record[c]) for c in COLUMNS)
                except (TypeError, ValueError):
                    fail(f"{path}, line {line}: every column must be a number")
                if width <= 0 or depth <= 0:
                    fail(
                        f"{path}, line {line}: width and depth must be positive "
                        f"(got width {width}, depth {depth})"
                    )
                sections.append((km, width, depth, bed))
    sections.sort()
    for previous, section in itertools.pairwise(sections):
        if section[0] - previous[0] < 0.01:
            fail(f"two cross-sections at km {section[0]:.3f}: sections must be at least 10 m apart")
    if len(sections) < 3:
        fail(f"only {len(sections)} cross-section(s) found; the model needs at least 3")
    return sections


def main():
    settings = read_settings()
    paths = sorted(glob.glob(os.path.join(UPLOADED, "**", "*.csv"), recursive=True))
    if os.path.isdir(UPLOADED) and not paths:
        fail(
            "the uploaded sections archive holds no .csv file",
            f"expected CSV files with the columns {', '.join(COLUMNS)}",
        )
    if not paths:
        paths = [DEFAULT]
        print(f"no cross-sections uploaded; using the default reach in {DEFAULT}")
    sections = read_sections(paths)

    rows = []
    for index, (km, width, depth, bed) in enumerate(sections):
        spacing = (km - sections[index - 1][0]) * 1000.0 if index else 0.0
        rows.append((km, spacing, width, depth, bed, bed + depth))
    os.makedirs("grid", exist_ok=True)
    write_columns(
        "grid/grid.dat",
        ["km", "dx", "width", "depth", "bed_level", "water_level"],
        rows,
        "%9.3f %8.1f %7.2f %6.3f %9.4f %9.4f",
    )
    days = (settings["end_date"] - settings["start_date"]).days + 1
    print(
        f"grid: {len(rows)} sections from km {rows[0][0]:g} to km {rows[-1][0]:g} "
        f"({len(paths)} file(s)); period {settings['start_date']} to {settings['end_date']} "
        f"({days} days)"
    )


if __name__ == "__main__":
    main()
