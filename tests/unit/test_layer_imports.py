"""The layering rule between api/ and web/, read from the source with ast.

Both call the domain's services (a run or sweep is submitted through
``simyard.domain.submission``); neither imports the other's routers or pages. What web/
may take from api/ is the public request reader and the shared request dependencies and
answer shapes; api/ takes from web/ only the session check and the mounting of the pages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import simyard

SRC = Path(simyard.__file__).parent

WEB_MAY_IMPORT = {"simyard.api.runrequest", "simyard.api.deps", "simyard.api.schemas"}
API_MAY_IMPORT = {
    "simyard.api.deps": {"simyard.web.session"},
    "simyard.api.app": {"simyard.web.app"},
}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """Each simyard module the file imports, with the names taken from it."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return [(module, names) for module, names in found if module.startswith("simyard")]


def module_name(path: Path) -> str:
    return ".".join(("simyard", *path.relative_to(SRC).with_suffix("").parts))


def test_web_takes_from_api_only_the_request_reader_and_shared_dependencies() -> None:
    wrong = [
        f"{module_name(path)} imports {module}"
        for path in sorted((SRC / "web").rglob("*.py"))
        for module, _ in imports_of(path)
        if (module == "simyard.api" or module.startswith("simyard.api."))
        and module not in WEB_MAY_IMPORT
    ]
    assert wrong == []


def test_api_takes_nothing_from_web_but_the_session_and_the_pages_mount() -> None:
    wrong = [
        f"{module_name(path)} imports {module}"
        for path in sorted((SRC / "api").rglob("*.py"))
        for module, _ in imports_of(path)
        if (module == "simyard.web" or module.startswith("simyard.web."))
        and module not in API_MAY_IMPORT.get(module_name(path), set())
    ]
    assert wrong == []


def test_no_private_name_crosses_between_api_and_web() -> None:
    wrong = [
        f"{module_name(path)} imports {module}.{name}"
        for side, other in (("web", "simyard.api"), ("api", "simyard.web"))
        for path in sorted((SRC / side).rglob("*.py"))
        for module, names in imports_of(path)
        if module.startswith(other)
        for name in names
        if name.startswith("_")
    ]
    assert wrong == []


def test_the_submission_service_is_in_the_domain_not_in_a_router() -> None:
    for side in ("api", "web"):
        for path in (SRC / side).rglob("*.py"):
            tree = ast.parse(path.read_text())
            classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
            assert not [c for c in classes if c.endswith("Submission")], path
    domain = {module for module, _ in imports_of(SRC / "web/pages/newrun.py")}
    assert "simyard.domain.submission" in domain
