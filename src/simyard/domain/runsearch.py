"""What a search of the runs list asks for: ``drought tag:calibration albedo>0.1 site=North``.

A term is a parameter condition (``NAME=VALUE``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; numbers
compare as numbers, anything else as text), a tag (``tag:NAME``), a run id (``12`` or
``#12``), or a word found in the run's name, its model's name or its owner's name.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simyard.domain.tables import Run

_CONDITION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(<=|>=|!=|=|<|>)(.*)$")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Condition:
    """``name op value`` on a run's parameters."""

    name: str
    op: str
    value: str

    def holds(self, params: dict[str, Any]) -> bool:
        if self.name not in params:
            return False
        have, want = params[self.name], self.value
        number = _number(want)
        if isinstance(have, int | float) and not isinstance(have, bool) and number is not None:
            return _OPERATORS[self.op](have, number)
        if isinstance(have, bool):
            have = "true" if have else "false"
        if self.op in ("=", "!="):
            return _OPERATORS[self.op](str(have).lower(), want.lower())
        return _OPERATORS[self.op](str(have), want)


@dataclass(frozen=True)
class Search:
    """The parsed terms; ``words`` are matched by the database, the rest on each run."""

    run_id: int | None = None
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)

    @property
    def needs_runs(self) -> bool:
        """True when some term is checked on the runs themselves (tags, parameters)."""
        return bool(self.tags or self.conditions)

    def matches(self, run: Run) -> bool:
        tags = set(run.tags or [])
        return all(t in tags for t in self.tags) and all(
            c.holds(run.params or {}) for c in self.conditions
        )


def parse_search(text: str) -> Search:
    words: list[str] = []
    tags: list[str] = []
    conditions: list[Condition] = []
    run_id = None
    for term in text.split():
        if term.lower().startswith("tag:") and len(term) > 4:
            tags.append(term[4:])
        elif found := _CONDITION.match(term):
            conditions.append(Condition(found.group(1), found.group(2), found.group(3)))
        elif term.lstrip("#").isdigit() and len(term.lstrip("#")) < 10 and run_id is None:
            run_id = int(term.lstrip("#"))
        else:
            words.append(term)
    return Search(run_id, words, tags, conditions)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
