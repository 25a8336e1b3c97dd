"""Cross-field rules of the river sediment model, checked by simyard before a run is created.

simyard calls ``validate(params, inputs)`` once every parameter is valid on its own:
``params`` holds typed values (dates are ``datetime.date``, booleans ``bool``),
``inputs`` maps each uploaded input slot to its file. The answer lists problems;
an error refuses the run, a warning is shown and the run may still start.

This file runs inside simyard's process, not in the model's working directory, so it
imports nothing from the model folder and only reads the files it is given.
"""

import math
import tarfile
import zipfile

MAX_DAYS = 3650
REFERENCE_DEPTH = 2.0  # m, a typical depth of the reach
GRAVITY = 9.81
RELATIVE_DENSITY = 2.65
VISCOSITY = 1.0e-6


def critical_velocity(grain_size_mm, depth=REFERENCE_DEPTH):
    """Mean flow velocity (m/s) at which grains of this size start to move."""
    d = grain_size_mm / 1000.0
    r_g = (RELATIVE_DENSITY - 1) * GRAVITY
    dstar = d * (r_g / VISCOSITY**2) ** (1 / 3)
    theta_c = 0.30 / (1 + 1.2 * dstar) + 0.055 * (1 - math.exp(-0.02 * dstar))
    return math.sqrt(theta_c * r_g * d) * 5.75 * math.log10(12 * depth / (2 * d))


def archive_members(path):
    """Names of the files in a zip or tar archive; ValueError when it is neither."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [info.filename for info in archive.infolist() if not info.is_dir()]
    try:
        with tarfile.open(path) as archive:
            return [member.name for member in archive.getmembers() if member.isfile()]
    except tarfile.TarError:
        raise ValueError("not a zip or tar archive") from None


def validate(params, inputs):
    errors, warnings = [], []
    start, end = params["start_date"], params["end_date"]
    if end <= start:
        errors.append(("end_date", f"must be after start_date ({start.isoformat()})"))
    elif (end - start).days + 1 > MAX_DAYS:
        errors.append(
            (
                "end_date",
                f"the run covers {(end - start).days + 1} days; "
                f"at most {MAX_DAYS} (about ten years) are allowed",
            )
        )

    needed = critical_velocity(params["grain_size"])
    if params["flow_velocity"] < needed:
        warnings.append(
            (
                "flow_velocity",
                f"{params['flow_velocity']:g} m/s does not move {params['grain_size']:g} mm "
                f"grains (they start to move at about {needed:.2f} m/s): the run will "
                "show no transport",
            )
        )
    if params["suspended_load"] and params["grain_size"] >= 2.0:
        warnings.append(
            (
                "suspended_load",
                "gravel (2 mm and coarser) is not carried in suspension; "
                "suspended load will be zero",
            )
        )

    sections = inputs.get("sections")
    if sections is not None:
        try:
            members = archive_members(sections)
        except (OSError, ValueError) as exc:
            errors.append(("inputs.sections", f"cannot read the archive: {exc}"))
        else:
            if not any(name.lower().endswith(".csv") for name in members):
                errors.append(
                    (
                        "inputs.sections",
                        "the archive holds no .csv file (one or more CSV files with "
                        "columns km, width, depth, bed_level are expected)",
                    )
                )
    return {"errors": errors, "warnings": warnings}
