"""Step 3 of the river sediment model: the bed profile and the sediment budget of the reach.

Usage: python3 postprocess.py

Reads  grid/grid.dat, state/bed_final.dat, output/transport.csv, output/summary.json
Writes report/bed_profile.csv   km, initial and final bed level, change in mm
       report/budget.txt        sediment entering, leaving and stored in the reach
"""

import csv
import json
import os

from sedcore import fail, read_columns

POROSITY = 0.4


def main():
    for path in ("grid/grid.dat", "state/bed_final.dat", "output/transport.csv"):
        if not os.path.exists(path):
            fail(f"{path} is missing: did the earlier steps run?")
    grid = read_columns("grid/grid.dat")
    final = read_columns("state/bed_final.dat")
    with open("output/summary.json", encoding="utf-8") as handle:
        summary = json.load(handle)
    with open("output/transport.csv", newline="", encoding="utf-8") as handle:
        daily = list(csv.DictReader(handle))

    os.makedirs("report", exist_ok=True)
    stored = 0.0
    with open("report/bed_profile.csv", "w", encoding="utf-8") as out:
        out.write("km,initial_bed,final_bed,change_mm\n")
        for section, end in zip(grid, final, strict=True):
            km, dx, width, _, initial, _ = section
            change = end[1] - initial
            out.write(f"{km:.3f},{initial:.4f},{end[1]:.4f},{change * 1000:.2f}\n")
            # The grains in the bed of the cell that reaches up to the previous section.
            stored += change * width * dx * (1.0 - POROSITY)
    entered = sum(float(row["load_in"]) for row in daily)
    left = sum(float(row["bedload"]) + float(row["suspended"]) for row in daily)
    with open("report/budget.txt", "w", encoding="utf-8") as out:
        out.write("Sediment budget of the reach (m3 of grains, pores excluded)\n")
        out.write(f"  period                {daily[0]['date']} to {daily[-1]['date']}\n")
        out.write(f"  formula               {summary['transport_formula']}\n")
        out.write(f"  grain size            {summary['grain_size_mm']:g} mm\n")
        out.write(f"  entered the reach     {entered:12.2f}\n")
        out.write(f"  left the reach        {left:12.2f}\n")
        out.write(f"  stored in the bed     {stored:12.2f}\n")
        out.write(f"  balance error         {entered - left - stored:12.2f}\n")
        out.write(f"  max erosion           {summary['max_erosion_m'] * 1000:12.1f} mm\n")
        out.write(f"  max deposition        {summary['max_deposition_m'] * 1000:12.1f} mm\n")
    print(f"wrote report/bed_profile.csv and report/budget.txt ({len(grid)} sections)")


if __name__ == "__main__":
    main()
