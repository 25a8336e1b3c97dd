# ruff: noqa: SIM115, UP031 -- deliberately old-style research code, kept as the authors wrote it
# POPCARP pre-processor, v0.3 (c) 2004 pond ecology group
# converts the pond table (data/ponds.csv) to the fixed-width deck popsim reads
import csv
import json
import os
import shutil

PARFILE = "params.json"
PONDS = "data/ponds.csv"
OUTDIR = "prep"

par = json.load(open(PARFILE))
print("POPCARP prepare: site", par["site"], "scenario", par["scenario"])

rows = []
f = open(PONDS, newline="", encoding="utf-8-sig")
for r in csv.DictReader(f):
    name = r["pond"].strip()
    area = float(r["area_ha"])
    fish0 = int(r["fish0"])
    stock = int(r.get("stocking") or 0)
    rows.append((name, area, fish0, stock))
f.close()

if not os.path.isdir(OUTDIR):
    os.mkdir(OUTDIR)
out = open(OUTDIR + "/ponds.dat", "w")
out.write("%-8s%12s%10s%10s\n" % ("POND", "AREA", "N0", "STOCK"))
for name, area, fish0, stock in rows:
    out.write("%-8s%12.4f%10d%10d\n" % (name, area, fish0, stock))
out.close()
# keep a copy of the deck we were given, for the record
shutil.copy(PARFILE, OUTDIR + "/params_used.json")
print("prepared", len(rows), "ponds")
