"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis),
against a live ``simyard serve`` on SQLite and on PostgreSQL: no answer is a 5xx, and every
answer is one the document declares, in the declared media type and shape.

Every operation is fuzzed with valid requests (as the document describes them) and with
invalid ones (a value of the wrong type, out of range, a missing field). The server has one
registered model, ``probe``, whose single task prints a line: the operations that create
runs (``POST /runs``, ``/sweeps``, ``/runs/{id}/rerun``) can then only start runs that end in
a moment, so fuzzing never fills the machine with real model runs. Generated bodies for
``POST /runs`` and ``/sweeps`` name no registered model (the document cannot know one), so
they are refused; reruns of the one real run may start a few probe runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import Server
from tests.integration.test_malformed_requests import server as server  # the fixture

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}  # per operation
# A password login is slow on purpose (hashing, throttling after failures): fewer of them.
FEWER = {"POST /api/v1/tokens": 5}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def own_token_id(server: Server) -> int | None:
    """The id of the fuzzing token, so that fuzzing never revokes the token it uses."""
    with server.http() as api:
        found = api.get("/tokens")
    if found.status_code != 200:
        return None
    token = server.tokens["admin"]
    for row in found.json():
        if isinstance(row, dict) and token.startswith(str(row.get("prefix") or "\x00")):
            return int(row["id"])
    return None


def fuzz_operation(
    operation: Any, mode: GenerationMode, send: Callable[[Any], None], keep: Callable[[Any], bool]
) -> str | None:
    """Fuzz one operation in one mode; the failure report, or None."""

    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=min(EXAMPLES[mode], FEWER.get(label, EXAMPLES[mode])),
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure can be reproduced
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the report shows the request
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode).filter(keep))
    def fuzz(case: Any) -> None:
        send(case)

    try:
        fuzz()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters
        return None
    except (Exception, BaseExceptionGroup) as exc:  # the checks' failures, a transport error
        return f"{label} ({mode.value}):\n{exc}"
    return None


def test_fuzzing_the_api_finds_no_server_error_and_no_undeclared_answer(server: Server) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    keep_token = own_token_id(server)
    sent: list[int] = []

    def send(case: Any) -> None:
        response = case.call(base_url=server.url, headers=headers, timeout=30)
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    def keep(case: Any) -> bool:
        # Revoking the token the fuzzer uses would turn every later request into a 401.
        token_id = (case.path_parameters or {}).get("token_id")
        return not (keep_token is not None and str(token_id) == str(keep_token))

    operations = [result.ok() for result in schema.get_all_operations()]
    # Token revocation last, in case it still revokes something the others need.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    started = time.monotonic()
    failures: list[str] = []
    spent: dict[str, float] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            begun = time.monotonic()
            if (failure := fuzz_operation(operation, mode, send, keep)) is not None:
                failures.append(failure)
            label = f"{operation.method.upper()} {operation.path}"
            spent[label] = spent.get(label, 0.0) + time.monotonic() - begun
    took = time.monotonic() - started
    slowest = sorted(spent.items(), key=lambda item: -item[1])[:3]

    statuses = {code: sent.count(code) for code in sorted(set(sent))}
    print(  # the figures this test exists to show
        f"\nfuzzed {len(operations)} operations with {len(sent)} requests in {took:.1f} s "
        f"({server.env.get('SIMYARD_DATABASE_URL', 'sqlite').split(':')[0]}); "
        f"answers by status: {statuses}; slowest: "
        + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in slowest)
    )
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)
    assert len(sent) > 5 * len(operations)  # every operation was exercised, most many times
    with httpx.Client(base_url=server.url, timeout=30) as web:
        assert web.get("/healthz").status_code == 200  # and the server is still well
