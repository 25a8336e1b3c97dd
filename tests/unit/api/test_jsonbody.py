"""Parsing a client's JSON object: too deep, not JSON, not an object; each names its field."""

from __future__ import annotations

import pytest

from simyard.api.jsonbody import BODY, MAX_JSON_DEPTH, parse_json_object, too_deep
from simyard.errors import ValidationFailed


def refusal(data: str | bytes, field: str) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        parse_json_object(data, field)
    return [str(p) for p in info.value.problems]


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def test_100000_open_brackets_are_refused_as_too_deep() -> None:
    assert refusal("[" * 100_000, "params") == ["params: nested deeper than 64 levels"]


def test_open_brackets_that_never_close_name_the_field_they_are_in() -> None:
    body = '{"model": "m", "params": ' + "[" * 100_000 + "}"

    assert refusal(body, BODY) == ["params: nested deeper than 64 levels"]


def test_5000_nested_objects_in_a_body_name_the_top_level_field() -> None:
    body = '{"model": "m", "params": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"

    assert refusal(body, BODY) == ["params: nested deeper than 64 levels"]


def test_too_deep_inside_a_form_field_names_the_field() -> None:
    text = '{"days": 3, "layers": ' + nested(MAX_JSON_DEPTH) + "}"

    assert refusal(text, "params") == ["params: nested deeper than 64 levels"]


def test_64_levels_are_accepted() -> None:
    text = '{"x": ' + nested(MAX_JSON_DEPTH - 1) + "}"

    assert not too_deep(text.encode())
    assert "x" in parse_json_object(text, "params")


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"note": "' + "[{" * 500 + '\\" [[[["}'

    assert parse_json_object(text.encode(), "params") == {"note": "[{" * 500 + '" [[[['}


def test_brackets_that_do_not_pair_up_are_not_json() -> None:
    assert refusal("[" * 900 + "}", "params") == [
        "params: not valid JSON (Expecting value at line 1, column 901)"
    ]


def test_text_that_is_not_json_is_refused() -> None:
    assert refusal(b"{days: 3}", BODY) == [
        "body: not valid JSON (Expecting property name enclosed in double quotes at line 1, "
        "column 2)"
    ]


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "3", "null"])
def test_a_value_that_is_not_an_object_is_refused(text: str) -> None:
    assert refusal(text, "axes") == ["axes: must be a JSON object"]


def test_a_large_flat_document_with_many_brackets_is_accepted() -> None:
    text = b'{"x": [' + b"[1, {}]," * 1_000_000 + b"[]]}"  # 8 MB, 4 levels deep

    assert len(parse_json_object(text, "params")["x"]) == 1_000_001
