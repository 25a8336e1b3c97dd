"""``simyard models init DIR``: a first manifest proposed from what a model folder holds.

It looks for a parameter file simyard can read (a Fortran namelist, JSON, YAML, or
``name = value`` lines), proposes a typed parameter with its default for each scalar
value, and a task running the folder's program on it. A starting point to edit, which
``simyard models check`` then judges like any other.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import yaml

from simyard.errors import ParameterFileError
from simyard.manifest.paramfile import read_json, read_keyvalue, read_namelist, read_yaml
from simyard.manifest.schema import IDENTIFIER_RE, ParameterFileFormat, ParameterFileSpec

_BY_SUFFIX = {
    ".nml": ParameterFileFormat.namelist,
    ".namelist": ParameterFileFormat.namelist,
    ".json": ParameterFileFormat.json,
    ".yaml": ParameterFileFormat.yaml,
    ".yml": ParameterFileFormat.yaml,
    ".txt": ParameterFileFormat.keyvalue,
    ".par": ParameterFileFormat.keyvalue,
    ".cfg": ParameterFileFormat.keyvalue,
    ".conf": ParameterFileFormat.keyvalue,
    ".params": ParameterFileFormat.keyvalue,
    ".in": ParameterFileFormat.keyvalue,
}
_READERS = {
    ParameterFileFormat.namelist: read_namelist,
    ParameterFileFormat.json: read_json,
    ParameterFileFormat.yaml: read_yaml,
    ParameterFileFormat.keyvalue: read_keyvalue,
}
MAX_FILE = 1 << 20


def propose_manifest(folder: Path) -> tuple[str, str | None]:
    """The proposed ``simyard.yaml`` text, and the parameter file it is built on (or None)."""
    found = _first_parameter_file(folder)
    manifest: dict[str, Any] = {
        "simyard": 1,
        "name": _model_name(folder),
        "version": "0.1",
        "parameters": {},
    }
    argv: list[str] = [_program(folder, found[0] if found else None)]
    if found is not None:
        path, spec, values = found
        manifest["parameters"] = {k: _parameter(v) for k, v in values.items()}
        manifest["parameter_file"] = {"path": path, "format": spec.format.value}
        if spec.group is not None:
            manifest["parameter_file"]["group"] = spec.group
        argv.append(path)
    manifest["tasks"] = {"run": {"command": argv, "outputs": ["results/"]}}
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
    return text, found[0] if found else None


def _first_parameter_file(folder: Path) -> tuple[str, ParameterFileSpec, dict[str, Any]] | None:
    for file in sorted(folder.rglob("*")):
        fmt = _BY_SUFFIX.get(file.suffix.lower())
        if fmt is None or not file.is_file() or file.stat().st_size > MAX_FILE:
            continue
        rel = file.relative_to(folder).as_posix()
        if rel == "simyard.yaml" or any(part.startswith(".") for part in Path(rel).parts):
            continue
        values = _scalars(file, rel, fmt)
        if values:
            group = _namelist_group(file) if fmt is ParameterFileFormat.namelist else None
            return rel, ParameterFileSpec(path=rel, format=fmt, group=group), values
    return None


def _scalars(file: Path, rel: str, fmt: ParameterFileFormat) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8-sig")
        spec = ParameterFileSpec(path=rel, format=fmt)
        entries = list(_READERS[fmt](text, rel, spec))
    except (ParameterFileError, UnicodeDecodeError, OSError, ValueError):
        return {}
    values = {}
    for key, value, _ in entries:
        if re.fullmatch(IDENTIFIER_RE, str(key)) and isinstance(value, bool | int | float | str):
            values[str(key)] = _typed(value) if fmt is ParameterFileFormat.keyvalue else value
    return values


def _namelist_group(file: Path) -> str | None:
    match = re.search(r"&([A-Za-z_][A-Za-z0-9_]*)", file.read_text(errors="replace"))
    return match.group(1).lower() if match and match.group(1).lower() != "params" else None


def _typed(text: Any) -> Any:
    """A ``name = value`` line's text as the value it most likely is."""
    raw = str(text).strip()
    if raw.lower() in ("true", "false", ".true.", ".false."):
        return raw.lower().strip(".") == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        return raw


def _parameter(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean", "default": value}
    if isinstance(value, int):
        return {"type": "integer", "default": value}
    if isinstance(value, float):
        return {"type": "number", "default": value}
    if isinstance(value, dt.date):
        return {"type": "date", "default": value.isoformat()}
    return {"type": "string", "default": str(value)}


def _program(folder: Path, parameter_file: str | None) -> str:
    """The folder's own executable (``./run.sh``), else a name to replace."""
    for file in sorted(folder.iterdir()):
        if (
            file.is_file()
            and os.access(file, os.X_OK)
            and file.name != parameter_file
            and not file.name.startswith(".")
        ):
            return f"./{file.name}"
    return "./model"


def _model_name(folder: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    return (name or "model")[:64]
