"""Shared pieces of the river sediment model: the namelist, the grid files, the transport laws.

The model reads its settings from the Fortran namelist ``sediment.nml`` (group
``&sediment``), as its Fortran ancestor did, with the f90nml package.
"""

import datetime as dt
import math
import sys

import f90nml

NAMELIST_FILE = "sediment.nml"
NAMELIST_GROUP = "sediment"

GRAVITY = 9.81  # m s-2
RELATIVE_DENSITY = 2.65  # quartz / water
VISCOSITY = 1.0e-6  # kinematic viscosity of water, m2 s-1
KARMAN_FACTOR = 5.75  # logarithmic velocity profile: u / u* = 5.75 log10(12 h / ks)
FORMULAS = ("meyer-peter-mueller", "engelund-hansen", "van-rijn")


def fail(message, *details, code=3):
    """Print an ERROR line and its detail lines, then stop with a non-zero exit code."""
    print("ERROR: " + message, flush=True)
    for line in details:
        print("  " + line, flush=True)
    sys.exit(code)


def as_date(value, name):
    """A namelist date: 'YYYY-MM-DD' text (or a date f90nml already parsed)."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        fail(f"{NAMELIST_FILE}: {name} = {value!r} is not a date written YYYY-MM-DD")


def read_settings(path=NAMELIST_FILE):
    """The ``&sediment`` group as a dict with typed values; stops with an ERROR when unusable."""
    try:
        namelist = f90nml.read(path)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except (ValueError, IndexError) as exc:  # f90nml's way of saying "this is not a namelist"
        fail(f"{path} is not a valid namelist: {exc}")
    if NAMELIST_GROUP not in namelist:
        fail(f"{path} has no &{NAMELIST_GROUP} group")
    group = namelist[NAMELIST_GROUP]
    required = (
        "start_date",
        "end_date",
        "flow_velocity",
        "grain_size",
        "transport_formula",
        "suspended_load",
        "steps_per_day",
    )
    missing = [name for name in required if name not in group]
    if missing:
        fail(f"{path}: &{NAMELIST_GROUP} lacks {', '.join(missing)}")
    settings = {
        "start_date": as_date(group["start_date"], "start_date"),
        "end_date": as_date(group["end_date"], "end_date"),
        "flow_velocity": float(group["flow_velocity"]),
        "grain_size_m": float(group["grain_size"]) / 1000.0,
        "transport_formula": str(group["transport_formula"]).strip().lower(),
        "suspended_load": bool(group["suspended_load"]),
        "steps_per_day": int(group["steps_per_day"]),
        "pace": float(group.get("pace", 0.0)),
    }
    if settings["transport_formula"] not in FORMULAS:
        fail(
            f"{path}: unknown transport_formula {settings['transport_formula']!r}",
            "known: " + ", ".join(FORMULAS),
        )
    return settings


def write_columns(path, header, rows, fmt):
    """A whitespace-separated table with a ``#`` header line."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("# " + " ".join(header) + "\n")
        for row in rows:
            out.write(fmt % tuple(row) + "\n")


def read_columns(path):
    """Rows of a table written by write_columns, as lists of floats."""
    with open(path, encoding="utf-8") as handle:
        return [
            [float(v) for v in line.split()]
            for line in handle
            if line.strip() and not line.startswith("#")
        ]


# --------------------------------------------------------------------------- physics


def dimensionless_grain(d):
    """D*, the grain size made dimensionless with gravity and viscosity."""
    return d * ((RELATIVE_DENSITY - 1) * GRAVITY / VISCOSITY**2) ** (1 / 3)


def critical_shields(d):
    """Shields number at which the grains start to move (Soulsby's fit of the Shields curve)."""
    dstar = dimensionless_grain(d)
    return 0.30 / (1 + 1.2 * dstar) + 0.055 * (1 - math.exp(-0.02 * dstar))


def settling_velocity(d):
    """Settling velocity of a natural grain, m/s (Ferguson and Church, 2004)."""
    r_g = (RELATIVE_DENSITY - 1) * GRAVITY
    return r_g * d**2 / (18 * VISCOSITY + math.sqrt(0.75 * r_g * d**3))


def shear_velocity(u, h, d):
    """Bed shear velocity u* from the mean velocity with a log profile, ks = 2 d."""
    return u / (KARMAN_FACTOR * math.log10(max(12 * h / (2 * d), 1.01)))


def transport_rate(u, h, d, formula, suspended):
    """Volumetric sediment transport per metre of width, m2/s: (bedload, suspended load)."""
    u_star = shear_velocity(u, h, d)
    r_g = (RELATIVE_DENSITY - 1) * GRAVITY
    theta = u_star**2 / (r_g * d)
    theta_c = critical_shields(d)
    scale = math.sqrt(r_g * d**3)
    if formula == "meyer-peter-mueller":
        bedload = 8.0 * max(0.0, theta - theta_c) ** 1.5 * scale
    elif formula == "engelund-hansen":
        bedload = 0.05 * u**2 * math.sqrt(d / r_g) * theta**1.5 if theta > theta_c else 0.0
    else:  # van Rijn (1984) bedload
        excess = max(0.0, (theta - theta_c) / theta_c)
        bedload = 0.053 * scale * excess**2.1 / dimensionless_grain(d) ** 0.3
    suspended_load = 0.0
    if suspended and bedload > 0:
        rouse = settling_velocity(d) / (0.4 * u_star)
        suspended_load = 3.0 * bedload * max(0.0, 2.5 - rouse)
    return bedload, suspended_load
