"""Step 2 of the river sediment model: bed evolution of a river reach (1-D Exner equation).

Usage: python3 sediment.py [sediment.nml]

Each time step computes the flow velocity at every cross-section from the day's
discharge (a seasonal hydrograph scaled to flow_velocity at the upstream section),
the sediment transport from the chosen formula, and updates the bed level with an
explicit upwind scheme. The water level is held fixed, so deposition makes a section
shallower and faster, and erosion deeper and slower.

The explicit scheme is only stable while the Courant number of the bed, the distance
a bed wave travels in one step divided by the section spacing, stays below 1. Fast
flow, fine grains, closely spaced sections and few steps per day push it up; when it
goes past 1 the bed oscillates and the run stops with an ERROR.

Reads  sediment.nml, grid/grid.dat
Writes output/transport.csv (per day: discharge, load entering the reach, bedload and
       suspended load leaving it, in m3 of grains), output/summary.json, output/simulation.log,
       state/bed_final.dat, and rolling daily snapshots state/bed_day*.dat
       (state/bed_at_failure.dat when the run stops on an error)
"""

import datetime as dt
import glob
import json
import math
import os
import sys
import time

from sedcore import fail, read_columns, read_settings, transport_rate, write_columns

POROSITY = 0.4
SNAPSHOTS_KEPT = 3


def seasonal_factor(date):
    """Discharge relative to its yearly mean: high in spring snowmelt, low in autumn."""
    return 1.0 + 0.3 * math.sin(2 * math.pi * (date.timetuple().tm_yday - 80) / 365.0)


class Reach:
    """The cross-sections of the reach and their evolving bed levels."""

    def __init__(self, grid):
        self.grid = grid
        self.km = [row[0] for row in grid]
        self.dx = [row[1] for row in grid]  # distance to the previous section, m
        self.width = [row[2] for row in grid]
        self.depth0 = [row[3] for row in grid]
        self.water = [row[5] for row in grid]  # water level, held fixed
        self.bed = [row[4] for row in grid]
        self.reference_area = self.width[0] * self.depth0[0]

    def depth(self, i):
        return self.water[i] - self.bed[i]

    def changes(self):
        return [z - row[4] for row, z in zip(self.grid, self.bed, strict=True)]

    def write_state(self, path):
        rows = [(km, z, dz) for km, z, dz in zip(self.km, self.bed, self.changes(), strict=True)]
        write_columns(path, ["km", "bed_level", "change"], rows, "%9.3f %10.5f %9.5f")


class Unstable(Exception):
    """The bed moved so far in one step that the explicit scheme has clearly broken down."""

    def __init__(self, section, step):
        super().__init__(section, step)
        self.section, self.step = section, step


def advance_one_day(reach, discharge, settings, courant):
    """Run one day's time steps; the day's sediment volumes (m3) and its max Courant number.

    ``courant`` collects the largest bed Courant number of every step, so a caller can
    tell the value on the untouched bed (the first step) from the values later on.
    """
    steps = settings["steps_per_day"]
    dt_step = 86400.0 / steps
    grain, formula = settings["grain_size_m"], settings["transport_formula"]
    with_suspended = settings["suspended_load"]
    n = len(reach.km)
    load_in = bedload_out = suspended_out = 0.0
    max_courant_day = 0.0
    for step in range(1, steps + 1):
        loads = []
        for i in range(n):
            h = reach.depth(i)
            u = discharge / (reach.width[i] * h)
            bedload, suspended = transport_rate(u, h, grain, formula, with_suspended)
            loads.append((bedload + suspended) * reach.width[i])
            if i > 0:
                # A bed wave travels at about 3 q / ((1 - p) h): q grows like u^3 ~ h^-3.
                celerity = 3.0 * (bedload + suspended) / ((1.0 - POROSITY) * h)
                max_courant_day = max(max_courant_day, celerity * dt_step / reach.dx[i])
        load_in += loads[0] * dt_step
        bedload_out += bedload * reach.width[-1] * dt_step
        suspended_out += suspended * reach.width[-1] * dt_step
        courant.append(max_courant_day)
        # Exner equation, upwind; the upstream section is fed its own capacity (equilibrium).
        for i in range(1, n):
            grains = (1.0 - POROSITY) * reach.width[i] * reach.dx[i]
            reach.bed[i] -= dt_step * (loads[i] - loads[i - 1]) / grains
        for i in range(1, n):
            h = reach.depth(i)
            if not math.isfinite(h) or not 0.2 * reach.depth0[i] < h < 3.0 * reach.depth0[i]:
                raise Unstable(i, step)
    return load_in, bedload_out, suspended_out, max_courant_day


def main():
    settings = read_settings(sys.argv[1] if len(sys.argv) > 1 else "sediment.nml")
    reach = Reach(read_columns("grid/grid.dat"))
    start, end = settings["start_date"], settings["end_date"]
    if end < start:
        fail(f"end_date {end} is before start_date {start}")
    days = (end - start).days + 1
    steps = settings["steps_per_day"]

    os.makedirs("output", exist_ok=True)
    os.makedirs("state", exist_ok=True)
    clock = time.process_time()
    daily, courant = [], []
    with open("output/simulation.log", "w", encoding="utf-8") as log:
        log.write(
            f"RIVER SEDIMENT  {len(reach.km)} sections, {days} days from {start}, "
            f"{steps} steps/day\n"
            f"formula {settings['transport_formula']}, grain "
            f"{settings['grain_size_m'] * 1000:g} mm, suspended load "
            f"{settings['suspended_load']}, flow velocity {settings['flow_velocity']} m/s\n"
        )
        for day in range(1, days + 1):
            date = start + dt.timedelta(days=day - 1)
            discharge = settings["flow_velocity"] * reach.reference_area * seasonal_factor(date)
            try:
                load_in, bedload, suspended, max_courant = advance_one_day(
                    reach, discharge, settings, courant
                )
            except Unstable as exc:
                reach.write_state("state/bed_at_failure.dat")
                i = exc.section
                log.write(f"unstable at km {reach.km[i]:.3f} on {date}, step {exc.step}\n")
                needed = max(steps + 1, math.ceil(steps * courant[0] * 2))
                fail(
                    f"bed unstable at km {reach.km[i]:.2f} on {date}: depth "
                    f"{reach.depth(i):.2f} m (was {reach.depth0[i]:.2f} m)",
                    f"Courant number {courant[0]:.2f} at the start, {max(courant):.2f} at "
                    "the end; it must stay below 1.",
                    f"Use steps_per_day of at least {needed}, a lower flow_velocity "
                    "or coarser grains.",
                )
            daily.append((day, date, discharge, load_in, bedload, suspended, max_courant))
            reach.write_state(f"state/bed_day{day:05d}.dat")
            for old in sorted(glob.glob("state/bed_day*.dat"))[:-SNAPSHOTS_KEPT]:
                os.remove(old)
            line = (
                f"{date}  day {day}/{days}  {100.0 * day / days:5.1f}% done  "
                f"Q {discharge:7.2f} m3/s  load out {bedload + suspended:8.2f} m3  "
                f"max Courant {max_courant:.3f}"
            )
            print(line, flush=True)
            log.write(line + "\n")
            if settings["pace"] > 0:
                time.sleep(settings["pace"])

        reach.write_state("state/bed_final.dat")
        with open("output/transport.csv", "w", encoding="utf-8") as out:
            out.write("day,date,discharge,load_in,bedload,suspended,max_courant\n")
            for day, date, discharge, load_in, bedload, suspended, max_courant in daily:
                out.write(
                    f"{day},{date},{discharge:.3f},{load_in:.4f},{bedload:.4f},"
                    f"{suspended:.4f},{max_courant:.5f}\n"
                )
        changes = reach.changes()
        summary = {
            "days": days,
            "sections": len(reach.km),
            "transport_formula": settings["transport_formula"],
            "grain_size_mm": settings["grain_size_m"] * 1000,
            "total_load_in_m3": round(sum(row[3] for row in daily), 3),
            "total_bedload_m3": round(sum(row[4] for row in daily), 3),
            "total_suspended_m3": round(sum(row[5] for row in daily), 3),
            "max_erosion_m": round(max(0.0, -min(changes)), 4),
            "max_deposition_m": round(max(0.0, *changes), 4),
            "max_courant": round(max(courant), 4),
        }
        with open("output/summary.json", "w", encoding="utf-8") as out:
            json.dump(summary, out, indent=2)
        log.write(f"max Courant number {max(courant):.4f}\n")
        log.write(f"CPU time {time.process_time() - clock:.2f} s\n")
    print(
        f"finished: {summary['total_bedload_m3']} m3 bedload, "
        f"{summary['total_suspended_m3']} m3 suspended load left the reach"
    )


if __name__ == "__main__":
    main()
