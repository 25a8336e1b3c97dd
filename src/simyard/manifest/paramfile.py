"""The parameter file: write parameters in the model's own format, and read such a file back.

The parameter file is the model's interface, so every format but ``template`` round-trips:
:func:`render_parameter_file` writes it, :func:`read_parameter_file` turns an existing one
(e.g. a modeller's hand-written ``INPUT_PARAMETERS.txt``) back into typed values. Reading
hands every value to :func:`~simyard.manifest.params.parse_value`, so a file is held to the
same rules as the CLI, the API and the form.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import f90nml
import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from simyard.errors import ParameterFileError
from simyard.manifest.params import LINE_BREAKS, parse_value
from simyard.manifest.schema import (
    Manifest,
    ParameterFileFormat,
    ParameterFileSpec,
    StringParameter,
)

# (key as written in the file, raw value, 1-based line or None when the format cannot tell)
Entry = tuple[str, Any, int | None]

_KEYVALUE_LINE = re.compile(r"^\s*([^\s=:#!;][^\s=:]*)\s*[=:]\s*(.*?)\s*$")
_TRAILING_COMMENT = re.compile(r"\s+[#!;].*$")
_QUOTES = ('"', "'")


# --------------------------------------------------------------------------- writing


def render_parameter_file(
    manifest: Manifest,
    params: Mapping[str, Any],
    model_dir: Path,
    spec: ParameterFileSpec | None = None,
    *,
    inputs: Mapping[str, Path] | None = None,
    filenames: Mapping[str, str] | None = None,
) -> bytes:
    """The parameter file's bytes (UTF-8) for validated ``params``, in the manifest's format
    (``spec``: one of the manifest's ``parameter_files`` instead of its ``parameter_file``).
    A template also sees ``inputs`` (see :func:`template_inputs`) when they are given.

    Only the manifest's parameters are written, each must have a value. Values go through
    ``parse_value`` once more, so ISO date strings (from stored JSON) are written as dates
    and a whole number given for a ``number`` parameter as a real (``2.0``).
    """
    spec = spec or _file_spec(manifest)
    values: dict[str, Any] = {}
    for name, param in manifest.parameters.items():
        if name not in params:
            raise ParameterFileError(f"{spec.path}: no value for parameter {name!r}")
        try:
            values[name] = parse_value(param, params[name])
        except (ValueError, OverflowError) as exc:
            raise ParameterFileError(f"{spec.path}: {name}: {exc}") from None
    if spec.format is ParameterFileFormat.template:
        extra = {} if inputs is None else {"inputs": template_inputs(manifest, inputs, filenames)}
        return _render_template(spec, values, model_dir, extra).encode()
    return _WRITERS[spec.format](spec, values).encode()


def template_inputs(
    manifest: Manifest, inputs: Mapping[str, Path], filenames: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """What a template knows of each input slot: ``given``, ``name`` (the uploaded file's
    name), ``path`` (where it lands in the working directory) and ``size`` in bytes, so
    ``{% if inputs.bathymetry.given %}`` can branch on an optional upload."""
    shown = {}
    for slot, spec in manifest.inputs.items():
        file = inputs.get(slot)
        size = None
        if file is not None:
            with contextlib.suppress(OSError):
                size = file.stat().st_size
        name = (filenames or {}).get(slot) or (Path(spec.path).name if file else None)
        shown[slot] = {"given": file is not None, "name": name, "path": spec.path, "size": size}
    return shown


def write_keyvalue(spec: ParameterFileSpec, values: dict[str, Any]) -> str:
    """``name = value``, one per line in manifest order.

    Booleans are ``true``/``false``, dates ``YYYY-MM-DD``, numbers are written with ``repr``
    precision (``0.1``, ``1e-07``, ``2.0``) so they read back exactly, text as it is. Text
    with leading or trailing spaces, or that itself starts and ends with the same quote, is
    wrapped in double quotes, which reading strips again. A value with a line break cannot
    be written in this format and is refused.
    """
    lines = []
    for name, value in values.items():
        text = _single_line(spec, name, _plain_text(value))
        if text != text.strip() or (len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES):
            text = f'"{text}"'
        lines.append(f"{name} = {text}".rstrip())
    return "".join(line + "\n" for line in lines)


def write_json(spec: ParameterFileSpec, values: dict[str, Any]) -> str:
    """A JSON object ``{name: value}`` in manifest order, indent 2, dates as ISO strings."""
    plain = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}
    return json.dumps(plain, indent=2, ensure_ascii=False) + "\n"


class _ParameterDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, writing text that holds a line break or a non-printable
    character double-quoted: only there are all of them escaped (a NEL or U+2028 left
    plain or single-quoted is read back as a line break, folded to a space)."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    awkward = any(ch in LINE_BREAKS or not ch.isprintable() for ch in text)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if awkward else None)


_ParameterDumper.add_representer(str, _represent_text)


def write_yaml(spec: ParameterFileSpec, values: dict[str, Any]) -> str:
    """A YAML mapping in manifest order, dates as (quoted) ISO strings, UTF-8 text unescaped
    unless it holds line breaks or control characters (then double-quoted with escapes)."""
    plain = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}
    return yaml.dump(
        plain, Dumper=_ParameterDumper, sort_keys=False, allow_unicode=True,
        default_flow_style=False,
    )  # fmt: skip


def write_namelist(spec: ParameterFileSpec, values: dict[str, Any]) -> str:
    """A Fortran namelist with one group (``group``, default ``params``): ``&group ... /``.

    Booleans are ``.true.``/``.false.``, ``number`` parameters always reals (``2.0``, never
    ``2``, with ``repr`` precision), text and dates (ISO) in single quotes with ``'`` doubled.
    Fortran names are case-insensitive, so two parameters differing only in case, or text
    with a line break, are refused. Written here rather than by f90nml, whose writer escapes
    some characters Python-style where Fortran reads them literally; f90nml reads it back.
    """
    folded = [name.lower() for name in values]
    clash = [name for name in values if folded.count(name.lower()) > 1]
    if clash:
        raise ParameterFileError(f"{spec.path}: {', '.join(clash)}: a namelist ignores case")
    lines = [f"&{spec.namelist_group}"]
    for name, value in values.items():
        if isinstance(value, bool):
            text = ".true." if value else ".false."
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = "'" + _single_line(spec, name, _plain_text(value)).replace("'", "''") + "'"
        lines.append(f"    {name} = {text}")
    return "\n".join([*lines, "/", ""])


def _single_line(spec: ParameterFileSpec, name: str, text: str) -> str:
    if not LINE_BREAKS.isdisjoint(text):  # not only \n and \r: NEL, U+2028, ... too
        raise ParameterFileError(
            f"{spec.path}: {name}: a {spec.format} file cannot hold a line break"
        )
    return text


def _plain_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else str(value)


def _render_template(
    spec: ParameterFileSpec,
    values: dict[str, Any],
    model_dir: Path,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render the model's Jinja2 template (strict, sandboxed: it is model-owner content).

    The template sees every parameter by its name, plus ``params``, the whole mapping.
    Dates are ``datetime.date`` objects (``{{ start }}`` prints ``YYYY-MM-DD``). An undefined
    name is an error naming it and the line; ``include`` and ``extends`` are not available.
    """
    where = str(spec.template)
    try:
        source = (model_dir / where).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ParameterFileError(f"{where}: cannot read the template: {reason}") from None
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ParameterFileError(f"{where}: line {exc.lineno}: {exc.message}") from None
    try:
        return template.render({**values, **(extra or {}), "params": dict(values)})
    except Exception as exc:  # the model owner's template: report where it broke, never crash
        line = _template_line(exc)
        at = f"line {line}: " if line else ""
        reason = exc.message if isinstance(exc, jinja2.TemplateError) else repr(exc)
        raise ParameterFileError(f"{where}: {at}{reason}") from None


def _template_line(exc: BaseException) -> int | None:
    # Jinja2 rewrites the traceback so the template's own frames carry its line numbers.
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_WRITERS: dict[ParameterFileFormat, Callable[[ParameterFileSpec, dict[str, Any]], str]] = {
    ParameterFileFormat.keyvalue: write_keyvalue,
    ParameterFileFormat.json: write_json,
    ParameterFileFormat.yaml: write_yaml,
    ParameterFileFormat.namelist: write_namelist,
}


# --------------------------------------------------------------------------- reading


def read_parameter_file(
    manifest: Manifest, data: bytes, *, filename: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """Values for the manifest's parameters found in ``data``, and the names it does not know.

    Names match exactly, else case-insensitively. Every refusal is a ParameterFileError
    saying the file, the line where the format tells it, the parameter and why.
    """
    spec = _file_spec(manifest)
    name = filename or spec.path
    if spec.format is ParameterFileFormat.template:
        raise ParameterFileError(
            f"{name}: a parameter file made from a template cannot be read back"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ParameterFileError(
            f"{name}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})"
        ) from None
    entries = _READERS[spec.format](text, name, spec)
    from_text = spec.format is ParameterFileFormat.keyvalue
    return _typed_values(manifest, entries, name, from_text=from_text)


def read_keyvalue(text: str, name: str, spec: ParameterFileSpec) -> Iterator[Entry]:
    """``name = value``, ``name=value`` or ``name: value`` lines; see :func:`write_keyvalue`.

    Blank lines and lines starting with ``#``, ``!`` or ``;`` are ignored. One pair of
    surrounding quotes is stripped; a trailing comment (`` # ...``, `` ! ...``, `` ; ...``)
    is stripped from every value except text parameters', which are taken whole.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith(("#", "!", ";")):
            continue
        match = _KEYVALUE_LINE.match(line)
        if match is None:
            shown = line.strip() if len(line.strip()) <= 40 else line.strip()[:37] + "..."
            raise ParameterFileError(
                f"{name}: line {number}: expected 'name = value', got {shown!r}"
            )
        yield match.group(1), match.group(2), number


def read_json(text: str, name: str, spec: ParameterFileSpec) -> Iterator[Entry]:
    """A JSON object ``{name: value}``; values keep their JSON types."""
    try:
        # Keep every pair: a key given twice must be refused, not silently last-wins.
        data = json.loads(text, object_pairs_hook=_PairList)
    except json.JSONDecodeError as exc:
        raise ParameterFileError(f"{name}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise ParameterFileError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(data, _PairList):
        raise ParameterFileError(f"{name}: expected a JSON object {{name: value}}")
    for key, value in data:
        yield key, value, None


class _PairList(list[tuple[str, Any]]):
    """A JSON object as its list of pairs, duplicates included."""


def read_yaml(text: str, name: str, spec: ParameterFileSpec) -> Iterator[Entry]:
    """A YAML mapping, read by PyYAML's safe loader, with each key's line."""
    loader, line = None, None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return
        if not isinstance(node, yaml.MappingNode):
            raise ParameterFileError(f"{name}: expected a YAML mapping 'name: value'")
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            value = loader.construct_object(value_node, deep=True)
            yield str(key), value, line
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise ParameterFileError(f"{name}: {at}not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        at = f"line {line}: " if line else ""
        reason = " ".join(str(exc).split())  # PyYAML's messages span lines
        raise ParameterFileError(f"{name}: {at}not valid YAML: {reason}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_namelist(text: str, name: str, spec: ParameterFileSpec) -> Iterator[Entry]:
    """A Fortran namelist, parsed by f90nml; group and names are case-insensitive.

    The group named in the manifest is used; a file with exactly one group may name it
    differently. f90nml's warnings (e.g. values assigned to nothing) count as errors.
    """
    try:
        # f90nml prints its scanner state on some syntax errors; keep that off our stdout.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("error")
            namelist = f90nml.reads(text)
    except Exception as exc:  # f90nml raises assorted types (even AssertionError)
        detail = str(exc).removeprefix("f90nml: warning: ")
        raise ParameterFileError(
            f"{name}: not a readable Fortran namelist" + (f": {detail}" if detail else "")
        ) from None
    groups = list(dict.fromkeys(namelist.keys()))
    wanted = spec.namelist_group.lower()
    group_name = wanted if wanted in groups else groups[0] if len(groups) == 1 else None
    if group_name is None:
        found = ", ".join(f"&{g}" for g in groups) or "none"
        raise ParameterFileError(f"{name}: no namelist group &{wanted} (found: {found})")
    group = namelist[group_name]
    if isinstance(group, f90nml.namelist.Cogroup):
        raise ParameterFileError(f"{name}: namelist group &{group_name} appears more than once")
    for key, value in group.items():
        yield key, value, None


_READERS: dict[ParameterFileFormat, Callable[[str, str, ParameterFileSpec], Iterator[Entry]]] = {
    ParameterFileFormat.keyvalue: read_keyvalue,
    ParameterFileFormat.json: read_json,
    ParameterFileFormat.yaml: read_yaml,
    ParameterFileFormat.namelist: read_namelist,
}


def _typed_values(
    manifest: Manifest, entries: Iterator[Entry], name: str, *, from_text: bool
) -> tuple[dict[str, Any], list[str]]:
    folded: dict[str, list[str]] = {}
    for param in manifest.parameters:
        folded.setdefault(param.casefold(), []).append(param)
    values: dict[str, Any] = {}
    unknown: list[str] = []
    first_line: dict[str, int | None] = {}
    for key, raw, line in entries:
        where = f"{name}: line {line}" if line else name
        matches = [key] if key in manifest.parameters else folded.get(key.casefold(), [])
        if len(matches) != 1:
            if key not in unknown:
                unknown.append(key)
            continue
        param = matches[0]
        if param in first_line:
            first = first_line[param]
            also = f" (first on line {first})" if first else ""
            raise ParameterFileError(f"{where}: {param} is set twice{also}")
        first_line[param] = line
        spec = manifest.parameters[param]
        if isinstance(raw, list | tuple | set | dict):
            kind = "a mapping" if isinstance(raw, dict) else "a list"
            raise ParameterFileError(f"{where}: {param}: must be a single value, not {kind}")
        if from_text and isinstance(raw, str):
            raw = _unquote(raw, keep_comments=isinstance(spec, StringParameter))
        try:
            values[param] = parse_value(spec, raw)
        except (ValueError, OverflowError) as exc:
            raise ParameterFileError(f"{where}: {param}: {exc}") from None
    return values, unknown


def _unquote(raw: str, *, keep_comments: bool) -> str:
    if not keep_comments:
        raw = _TRAILING_COMMENT.sub("", raw).strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in _QUOTES:
        return raw[1:-1]
    return raw


def _file_spec(manifest: Manifest) -> ParameterFileSpec:
    if manifest.parameter_file is None:
        raise ParameterFileError(f"model {manifest.name!r} has no parameter file")
    return manifest.parameter_file
