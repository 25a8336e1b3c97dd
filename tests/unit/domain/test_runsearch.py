"""The runs list's search terms: parameters compared by type, tags, ids, words."""

from __future__ import annotations

import pytest

from simyard.domain.runsearch import parse_search
from simyard.domain.tables import Run


def run(params: dict[str, object], tags: list[str] | None = None) -> Run:
    return Run(params=params, tags=tags)


@pytest.mark.parametrize(
    ("query", "params", "found"),
    [
        ("albedo>0.1", {"albedo": 0.2}, True),
        ("albedo>0.1", {"albedo": 0.05}, False),
        ("albedo>0.1", {"days": 3}, False),  # no such parameter: not a match
        ("days>=3 days<10", {"days": 3}, True),
        ("days!=3", {"days": 3}, False),
        ("scenario=drought", {"scenario": "Drought"}, True),  # text: case does not matter
        ("scenario=drought", {"scenario": "flood"}, False),
        ("site>M", {"site": "North"}, True),  # text against text
        ("albedo>high", {"albedo": 0.2}, False),  # a number against a word: as text
        ("wet=true", {"wet": True}, True),
        ("albedo=nan", {"albedo": 0.2}, False),
    ],
)
def test_parameter_conditions(query: str, params: dict[str, object], found: bool) -> None:
    assert parse_search(query).matches(run(params)) is found


def test_tags_ids_and_words() -> None:
    search = parse_search("#12 drought tag:calibration tag:v2 albedo>0.1")
    assert search.run_id == 12
    assert search.words == ["drought"]
    assert search.needs_runs
    assert search.matches(run({"albedo": 0.3}, ["calibration", "v2", "x"]))
    assert not search.matches(run({"albedo": 0.3}, ["calibration"]))
    assert not parse_search("lake heat").needs_runs
    assert parse_search("12345678901").run_id is None  # past an id's range: a word
