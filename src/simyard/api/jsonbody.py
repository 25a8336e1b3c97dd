"""Parse a JSON object sent by a client, refusing nesting deeper than a person would write.

Python's parser recurses once per level of ``[``/``{``: 100,000 of them end in a
RecursionError, and a few thousand parse but break whatever walks the value afterwards
(validation, the database's JSON, the answer's encoder). So the depth is measured first,
on the text, without recursion and at C speed: strings are blanked out, everything but
brackets dropped, and the innermost pairs removed once per level. Only a
document that is too deep is scanned a second time, to name the field it is too deep in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from simyard.errors import Problem, ValidationFailed

MAX_JSON_DEPTH = 64
BODY = "body"  # the ``field`` of a whole request body: its keys are the request's fields
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(rb'("(?:[^"\\]|\\.)*")(\s*:)?|[\[\]{}]', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")  # depth is all that counts here, not the kind
_NAMING_SCAN = 1 << 20  # bytes scanned to name the field; past it the field itself is named


def parse_json_object(
    data: str | bytes, field: str, *, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """The JSON object in ``data``; ValidationFailed with one problem naming the field.

    ``field`` names what ``data`` is: a form field such as ``params``, or :data:`BODY` for
    a whole request body, whose keys are the request's fields: a body too deep inside its
    ``params`` names ``params``, as the same form field would. Linear in the size of
    ``data``; call it in the thread pool for a large body.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if too_deep(raw, max_depth):
        where = _deepest_field(raw, field, max_depth)
        raise ValidationFailed([Problem(where, f"nested deeper than {max_depth} levels")])
    try:
        value = json.loads(raw)
    except RecursionError:  # brackets that never close, too many for the parser
        where = _deepest_field(raw, field, max_depth)
        raise ValidationFailed([Problem(where, f"nested deeper than {max_depth} levels")]) from None
    except ValueError as exc:
        shown = ""
        if isinstance(exc, json.JSONDecodeError):
            shown = f" ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        raise ValidationFailed([Problem(field, f"not valid JSON{shown}")]) from None
    if not isinstance(value, dict):
        raise ValidationFailed([Problem(field, "must be a JSON object")])
    return value


def too_deep(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``data`` nests arrays and objects more than ``max_depth`` levels deep.

    Brackets inside strings do not count. A document whose brackets do not pair up is
    not judged here (the parser refuses it, and its own recursion limit is caught).
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # the common case: too few brackets to be too deep
    brackets = _STRING.sub(b"", data).translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(max_depth):  # each pass removes the innermost level everywhere
        inner = brackets.replace(b"[]", b"")
        if not inner:
            return False
        if inner == brackets:
            return False  # brackets that do not pair up: not JSON at all
        brackets = inner
    return True


def _deepest_field(data: bytes, field: str, max_depth: int) -> str:
    """The field a too-deep document is too deep in: for a body, the top-level key."""
    if field != BODY:
        return field
    depth = 0
    key: str | None = None
    for match in _TOKEN.finditer(data, 0, _NAMING_SCAN):
        token = match.group(0)
        if match.group(1) is not None:
            if match.group(2) is not None and depth == 1:
                key = _decoded(match.group(1))
            continue
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                break
        else:
            depth -= 1
    else:
        return field
    return field if key is None else key


def _decoded(quoted: bytes) -> str:
    try:
        return str(json.loads(quoted))[:200]
    except ValueError:
        return quoted[1:-1].decode("utf-8", "replace")[:200]
