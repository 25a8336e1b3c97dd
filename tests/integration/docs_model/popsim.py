# ruff: noqa: SIM115, UP031 -- deliberately old-style research code, kept as the authors wrote it
# POPCARP main simulation, v0.3
# logistic growth with harvest: N(t+1) = N + r N (1 - N/K) - h N  (+ restocking)
# usage: python3 popsim.py --years=N --site CODE
import json
import os
import sys

years = None
site = "??"
args = sys.argv[1:]
i = 0
while i < len(args):
    a = args[i]
    if a.startswith("--years="):
        years = int(a.split("=", 1)[1])
    elif a == "--site":
        i = i + 1
        site = args[i]
    i = i + 1

par = json.load(open("params.json"))
if years is None:
    years = par["years"]
r = par["growth_rate"]
cap = par["capacity"]
h = par["harvest"]
start_year = int(par["start"][0:4])
scen = os.environ.get("POPSIM_SCENARIO", "steady")
verbose = par["verbose"]

ponds = []
for line in open("prep/ponds.dat").readlines()[1:]:
    if line.strip() == "":
        continue
    ponds.append([line[0:8].strip(), float(line[8:20]), float(line[20:30]), int(line[30:40])])

for d in ("results", "states"):
    if not os.path.isdir(d):
        os.mkdir(d)
log = open("results/popsim.log", "w")
log.write("POPCARP popsim site %s scenario %s\n" % (site, scen))
print("POPCARP popsim: %d ponds, %d years, site %s" % (len(ponds), years, site))

# legacy sanity check: more than 5 times the carrying capacity is a data error
for p in ponds:
    limit = 5.0 * cap * p[1]
    if p[2] > limit:
        print(
            "ERROR: pond %s overstocked: %d fish on %.2f ha (limit %d)" % (p[0], p[2], p[1], limit)
        )
        print("  check the fish0 column of the pond table")
        print("  run aborted before year 1")
        log.write("aborted: pond %s overstocked\n" % p[0])
        log.close()
        sys.exit(0)  # old code: reports the error but exits 0

table = open("results/population.csv", "w")
table.write("year,calendar_year,total,harvest\n")
total_harvest = 0.0
peak = -1.0
peak_year = 0
for y in range(1, years + 1):
    tot = 0.0
    catch_y = 0.0
    for p in ponds:
        n = p[2]
        if scen == "restock":
            n = n + p[3]
        k = cap * p[1]
        growth = r * n * (1.0 - n / k)
        catch = h * n
        n = n + growth - catch
        if n < 0:
            n = 0.0
        p[2] = n
        tot = tot + n
        catch_y = catch_y + catch
    total_harvest = total_harvest + catch_y
    if tot > peak:
        peak = tot
        peak_year = y
    table.write("%d,%d,%.3f,%.3f\n" % (y, start_year + y - 1, tot, catch_y))
    st = open("states/year_%04d.dat" % y, "w")
    for p in ponds:
        st.write("%-8s%14.3f\n" % (p[0], p[2]))
    st.close()
    if verbose:
        log.write("year %d total %.3f\n" % (y, tot))
    print("year %d of %d" % (y, years), flush=True)
table.close()

log.write("peak in year %d\n" % peak_year)
log.close()
summary = {
    "site": site,
    "scenario": scen,
    "years": years,
    "totals": {
        "final_fish": round(sum(p[2] for p in ponds), 3),
        "harvest": round(total_harvest, 3),
    },
    "ponds": {p[0]: round(p[2], 3) for p in ponds},
}
json.dump(summary, open("results/summary.json", "w"), indent=1)
print("total harvest %.3f" % total_harvest)
print("done.")
