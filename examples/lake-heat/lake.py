"""Step 2 of the lake heat model: a two-layer heat budget of an ice-free lake, one step a day.

Usage: python3 lake.py INPUT_PARAMETERS.txt

The surface layer (epilimnion) exchanges heat with the air: absorbed sunlight,
net long-wave radiation, sensible heat and evaporation. The bottom layer
(hypolimnion) only exchanges heat with the surface layer, by wind mixing that
stratification suppresses, and by convective overturn when the surface gets colder.

The scenario comes from the LAKE_MODE environment variable when it is set (that is
how the operational scripts always ran it), otherwise from the parameter file.

Reads  INPUT_PARAMETERS.txt, prep/forcing_daily.dat, prep/initial_state.dat
Writes results/timeseries.csv, results/summary.json, results/model.log,
       results/daily_profile.dat.gz (via tools/compress_profile.py),
       intermediate/restart.dat
"""

import json
import math
import os
import sys
import time

from lakeio import PARAMETER_FILE, fail, get_number, read_parameters, read_table, write_table

RHO_CP = 4.186e6  # volumetric heat capacity of water, J m-3 K-1
SIGMA = 5.67e-8  # Stefan-Boltzmann constant, W m-2 K-4
SECONDS_PER_DAY = 86400.0
BOTTOM_DEPTH = 15.0  # thickness of the hypolimnion, m
HOTTEST_LAKE = 40.0  # deg C; no natural lake surface gets warmer than this

# scenario -> (air temperature offset K, wind factor, mixed layer depth m, inflow relaxation 1/d)
SCENARIOS = {
    "baseline": (0.0, 1.0, 5.0, 0.0),
    "drought": (2.0, 0.7, 3.5, 0.0),
    "flood": (0.0, 1.2, 6.0, 0.05),
}
FLOOD_INFLOW_TEMP = 8.0  # deg C, temperature of the river water in a flood


def saturation_vapour_pressure(temp):
    """hPa, Magnus formula."""
    return 6.11 * math.exp(17.27 * temp / (temp + 237.3))


def surface_heat_flux(surface, air, wind, doy, albedo):
    """Net heat flux into the lake surface, W m-2 (positive = warming)."""
    shortwave = (190.0 + 130.0 * math.cos(2 * math.pi * (doy - 172) / 365.0)) * (1.0 - albedo)
    longwave = 0.97 * SIGMA * (0.82 * (air + 273.15) ** 4 - (surface + 273.15) ** 4)
    sensible = (5.0 + 4.0 * wind) * (air - surface)
    vapour_deficit = saturation_vapour_pressure(surface) - 0.7 * saturation_vapour_pressure(air)
    evaporation = (1.5 + 1.2 * wind) * max(0.0, vapour_deficit)
    return shortwave + longwave + sensible - evaporation


def mix_layers(surface, bottom, wind, mixed_depth):
    """Wind mixing, weakened by stratification, and convective overturn.

    When the surface layer is colder than the bottom one (and above 4 deg C, where
    water gets denser as it cools) it sinks: both layers mix completely.
    """
    total = mixed_depth + BOTTOM_DEPTH
    if bottom > surface > 4.0:
        mean = (surface * mixed_depth + bottom * BOTTOM_DEPTH) / total
        return mean, mean
    exchange = (0.02 + 0.01 * wind) / (1.0 + 0.5 * max(0.0, surface - bottom))
    transfer = exchange * (surface - bottom)
    return surface - transfer * BOTTOM_DEPTH / total, bottom + transfer * mixed_depth / total


def main():
    param_path = sys.argv[1] if len(sys.argv) > 1 else PARAMETER_FILE
    params = read_parameters(param_path)
    albedo = get_number(params, "albedo")
    pace = get_number(params, "pace", default=0.0)
    station = params.get("station", "?")
    scenario = os.environ.get("LAKE_MODE") or params.get("scenario", "baseline")
    if scenario not in SCENARIOS:
        fail(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    air_offset, wind_factor, mixed_depth, inflow_rate = SCENARIOS[scenario]

    forcing = read_table("prep/forcing_daily.dat")
    surface, bottom = (float(v) for v in read_table("prep/initial_state.dat")[0])
    days = len(forcing)

    os.makedirs("results", exist_ok=True)
    os.makedirs("intermediate", exist_ok=True)
    started = time.time()
    series = []
    # Both files are closed by the with-block even when fail() stops the model.
    with (
        open("results/model.log", "w", encoding="utf-8") as log,
        open("intermediate/daily_profile.dat", "w", encoding="utf-8") as profile,
    ):
        log.write(f"LAKE HEAT model, station {station}, scenario {scenario}, albedo {albedo}\n")
        log.write(f"mixed layer {mixed_depth} m, bottom layer {BOTTOM_DEPTH} m, {days} days\n")
        profile.write("# day date surface_temp bottom_temp net_flux\n")
        for day_text, date, doy_text, air_text, wind_text in forcing:
            day, doy = int(day_text), int(doy_text)
            air = float(air_text) + air_offset
            wind = float(wind_text) * wind_factor
            flux = surface_heat_flux(surface, air, wind, doy, albedo)
            surface += flux * SECONDS_PER_DAY / (RHO_CP * mixed_depth)
            surface += inflow_rate * (FLOOD_INFLOW_TEMP - surface)
            surface, bottom = mix_layers(surface, bottom, wind, mixed_depth)

            if not math.isfinite(surface) or surface > HOTTEST_LAKE:
                log.write(f"diverged on day {day}\n")
                fail(
                    f"heat budget diverged on day {day} ({date}): surface temperature "
                    f"{surface:.1f} C",
                    f"No lake surface gets warmer than {HOTTEST_LAKE:g} C; the air was {air:.1f} C.",
                    "Is air_temp in the forcing in deg C (not deg F)?",
                )
            if surface <= 0.0:
                log.write(f"freezing on day {day}\n")
                fail(
                    f"lake surface froze on day {day} ({date}): {surface:.2f} C at air {air:.1f} C",
                    "This model has no ice cover, so it cannot go on below 0 C.",
                    "Use forcing without a hard frost, or stop the run before the cold spell.",
                )

            series.append((day, surface, bottom))
            profile.write(f"{day:5d} {date} {surface:8.3f} {bottom:8.3f} {flux:9.2f}\n")
            print(
                f"day {day} of {days}  surface {surface:6.2f} C  bottom {bottom:6.2f} C", flush=True
            )
            if pace > 0:
                time.sleep(pace)

    with open("results/timeseries.csv", "w", encoding="utf-8") as out:
        out.write("day,surface_temp,bottom_temp\n")
        for day, top, deep in series:
            out.write(f"{day},{top:.3f},{deep:.3f}\n")
    surface_temps = [row[1] for row in series]
    summary = {
        "station": station,
        "scenario": scenario,
        "albedo": albedo,
        "days": days,
        "max_surface_temp": round(max(surface_temps), 3),
        "min_surface_temp": round(min(surface_temps), 3),
        "mean_surface_temp": round(sum(surface_temps) / days, 3),
        "final_bottom_temp": round(bottom, 3),
        "stratified_days": sum(1 for _, top, deep in series if top - deep > 1.0),
    }
    with open("results/summary.json", "w", encoding="utf-8") as out:
        json.dump(summary, out, indent=2)
    write_table(
        "intermediate/restart.dat",
        ["day", "surface_temp", "bottom_temp"],
        [(days, surface, bottom)],
        "%5d %10.5f %10.5f",
    )

    # The daily profile is big for long runs; the old post-processing helper packs it.
    status = os.system(
        "python3 tools/compress_profile.py intermediate/daily_profile.dat "
        "results/daily_profile.dat.gz"
    )
    if status != 0:
        print("WARNING: compress_profile.py failed; results/daily_profile.dat.gz is missing")

    with open("results/model.log", "a", encoding="utf-8") as log:
        log.write(f"max surface temperature {summary['max_surface_temp']:.2f} C\n")
        log.write(f"wall time {time.time() - started:.2f} s\n")
    print(
        f"done: max surface temperature {summary['max_surface_temp']:.2f} C, "
        f"{summary['stratified_days']} stratified days"
    )


if __name__ == "__main__":
    main()
