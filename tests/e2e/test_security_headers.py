"""Security headers seen from the browser: no framing by another site, the API docs offline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import NewPage, start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def other_site() -> Iterator[dict[str, Any]]:
    """A page on another origin (another port) that frames whatever ``site["frame"]`` names."""
    site: dict[str, Any] = {"frame": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f'<!doctype html><h1>Win a prize</h1><iframe src="{site["frame"]}"></iframe>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield site
    httpd.shutdown()
    httpd.server_close()


def test_another_site_cannot_frame_a_run_page_with_its_buttons(
    server: Server, logged_in: Page, other_site: dict[str, Any], csp_violations: list[str]
) -> None:
    run_id = start_run(server, pace=3)
    logged_in.goto(f"{server.url}/runs/{run_id}")
    expect(logged_in.get_by_role("button", name="Cancel")).to_be_visible()  # it has one
    other_site["frame"] = f"{server.url}/runs/{run_id}"
    logged_in.goto(other_site["url"])
    expect(logged_in.get_by_role("heading", name="Win a prize")).to_be_visible()
    framed = logged_in.frame_locator("iframe")
    expect(framed.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(framed.get_by_text(f"Run {run_id}")).to_have_count(0)
    refused = [text for text in csp_violations if "frame-ancestors 'none'" in text]
    assert refused, csp_violations  # the browser says why: the page refuses to be framed
    csp_violations[:] = [text for text in csp_violations if text not in refused]


def test_every_answer_carries_the_security_headers(server: Server) -> None:
    with server.http() as api:
        answers = {
            "api": api.get("/runs"),
            "page": api.get(server.url + "/login"),
            "static": api.get(server.url + "/static/app.css"),
        }
    for where, answer in answers.items():
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp, where
        assert "frame-ancestors 'none'" in csp, where
        assert "unsafe-inline" not in csp, where
        assert "http" not in csp, where
        assert answer.headers["x-frame-options"] == "DENY", where
        assert answer.headers["x-content-type-options"] == "nosniff", where
        assert answer.headers["referrer-policy"] == "same-origin", where
    assert answers["api"].headers["cache-control"] == "no-store"
    assert answers["page"].headers["cache-control"] == "no-store"
    assert "no-store" not in answers["static"].headers["cache-control"]
    assert "strict-transport-security" not in answers["api"].headers  # http base URL


def test_the_api_docs_list_the_operations_with_nothing_loaded_from_elsewhere(
    server: Server, new_page: NewPage
) -> None:
    page = new_page()
    outside: list[str] = []

    def only_this_server(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(server.url + "/docs")
    expect(page.get_by_role("heading", name="simyard")).to_be_visible()
    expect(page.get_by_text("/api/v1/runs/validate").first).to_be_visible()
    assert outside == []
