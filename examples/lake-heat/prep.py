"""Step 1 of the lake heat model: turn the forcing CSV into the daily table the simulation reads.

Usage: python3 prep.py --days N

Reads  INPUT_PARAMETERS.txt and input/forcing.csv (or the bundled sample/forcing.csv
       when no forcing was uploaded)
Writes prep/forcing_daily.dat   one line per simulated day: day, date, day of year,
                                air temperature (deg C), wind speed (m/s)
       prep/initial_state.dat   starting surface and bottom temperatures
"""

import argparse
import csv
import datetime as dt
import itertools
import os

from lakeio import fail, read_parameters, write_table

UPLOADED_FORCING = "input/forcing.csv"
SAMPLE_FORCING = "sample/forcing.csv"


def read_forcing(path):
    """(date, air_temp, wind) rows; the manifest already checked types and ranges."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            rows.append(
                (
                    dt.date.fromisoformat(record["date"].strip()),
                    float(record["air_temp"]),
                    float(record["wind"]),
                )
            )
    if not rows:
        fail(f"{path} holds no data rows")
    for previous, row in itertools.pairwise(rows):
        if row[0] <= previous[0]:
            fail(f"{path}: dates must increase from row to row; {row[0]} comes after {previous[0]}")
        if (row[0] - previous[0]).days > 1:
            print(
                f"WARNING: forcing has a gap between {previous[0]} and {row[0]}; "
                "the rows are used one per day regardless"
            )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, required=True)
    days = parser.parse_args().days
    params = read_parameters()

    if os.path.exists(UPLOADED_FORCING):
        path = UPLOADED_FORCING
    else:
        path = SAMPLE_FORCING
        print(f"NOTE: no forcing file was uploaded; using the bundled {SAMPLE_FORCING}")
    forcing = read_forcing(path)
    print(
        f"read {len(forcing)} days of forcing from {path} "
        f"({forcing[0][0]} to {forcing[-1][0]}), station {params.get('station', '?')}"
    )
    if days > len(forcing):
        print(
            f"WARNING: {days} days requested but the forcing covers {len(forcing)}; "
            "the forcing is repeated from its start (climatology mode)"
        )

    start = forcing[0][0]
    table = []
    for day in range(1, days + 1):
        _, air_temp, wind = forcing[(day - 1) % len(forcing)]
        date = start + dt.timedelta(days=day - 1)
        table.append((day, date.isoformat(), date.timetuple().tm_yday, air_temp, wind))

    # The lake starts a little warmer than the first week's air, never below 4 deg C
    # (the density maximum: an ice-free lake is not colder than that at depth).
    first_week = [row[1] for row in forcing[:7]]
    surface = min(30.0, max(4.0, sum(first_week) / len(first_week) + 1.0))
    bottom = max(4.0, min(surface, 6.0))

    os.makedirs("prep", exist_ok=True)
    write_table(
        "prep/forcing_daily.dat",
        ["day", "date", "doy", "air_temp", "wind"],
        table,
        "%5d %s %4d %7.2f %6.2f",
    )
    write_table(
        "prep/initial_state.dat",
        ["surface_temp", "bottom_temp"],
        [(surface, bottom)],
        "%8.3f %8.3f",
    )
    print(
        f"wrote prep/forcing_daily.dat ({days} days) and prep/initial_state.dat "
        f"(surface {surface:.2f} C, bottom {bottom:.2f} C)"
    )


if __name__ == "__main__":
    main()
