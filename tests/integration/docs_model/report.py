# ruff: noqa: SIM115, UP031 -- deliberately old-style research code, kept as the authors wrote it
# POPCARP report writer
import csv
import json
import os

s = json.load(open("results/summary.json"))
rows = list(csv.DictReader(open("results/population.csv")))
if not os.path.isdir("report"):
    os.mkdir("report")
f = open("report/report.txt", "w")
f.write("POPCARP report for site %s (%s)\n" % (s["site"], s["scenario"]))
f.write("years simulated: %d\n" % len(rows))
f.write("final population: %.3f\n" % s["totals"]["final_fish"])
f.write("total harvest: %.3f\n" % s["totals"]["harvest"])
f.write("last calendar year: %s\n" % rows[-1]["calendar_year"])
f.close()
print("report written")
