"""How the pages look where people use them: dark mode, a small laptop screen, keyboard only."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import WAIT_MS, add_lake_heat, log_in, screenshot, start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1024, "height": 640}

# Relative luminance and contrast ratio as WCAG 2 defines them, computed in the page from
# the colours the browser actually used.
CONTRAST = """(element) => {
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  let node = element, bg = "rgba(0, 0, 0, 0)";
  while (node && /rgba\\(0, 0, 0, 0\\)|transparent/.test(bg)) {
    bg = getComputedStyle(node).backgroundColor; node = node.parentElement;
  }
  const a = lum(rgb(getComputedStyle(element).color)), b = lum(rgb(bg));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def dark_laptop_page(browser: Browser, server: Server) -> Page:
    context = browser.new_context(viewport=LAPTOP, color_scheme="dark")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    log_in(page, server, "admin")
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    return page


def assert_readable_without_sideways_scrolling(page: Page) -> None:
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 20, 25)", "the dark palette is not in use"
    for selector in ("h1", "main td", "main a", "main .muted"):
        element = page.locator(selector).first
        expect(element).to_be_attached()
        ratio = element.evaluate(CONTRAST)
        assert ratio >= 4.5, f"{selector}: contrast {ratio:.1f} is below WCAG AA's 4.5"
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the page is {wide} px wider than a {LAPTOP['width']} px window"


def test_the_run_page_and_runs_list_are_readable_in_dark_mode_on_a_laptop(
    server: Server, browser: Browser
) -> None:
    add_lake_heat(server)
    run_id = start_run(server, "lake-heat", forcing=None, days=10)
    page = dark_laptop_page(browser, server)
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("succeeded")
    expect(page.locator("#plot-0 .main-svg").first).to_be_visible()
    assert_readable_without_sideways_scrolling(page)
    # The chart follows the palette: its axis labels are drawn in the page's light text.
    tick = page.locator("#plot-0 .xtick text").first
    assert tick.evaluate("t => getComputedStyle(t).fill") != "rgb(68, 68, 68)"  # plotly's own
    page.get_by_role("heading", name="Plots").evaluate("heading => heading.scrollIntoView()")
    screenshot(page, "run-dark")

    page.goto(f"{server.url}/runs")
    expect(page.locator("main table")).to_contain_text("lake-heat")
    assert_readable_without_sideways_scrolling(page)


def test_a_run_can_be_started_with_the_keyboard_alone(server: Server, browser: Browser) -> None:
    add_lake_heat(server)
    page = dark_laptop_page(browser, server)
    page.goto(f"{server.url}/models/lake-heat/run")
    # Tab from the top of the page to the "Start run" button, pressing nothing else.
    button = page.get_by_role("button", name="Start run")
    for _ in range(200):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the Start run button")
    outline = button.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline != "none", "the focused button shows no focus outline"
    page.keyboard.press("Enter")
    expect(page.locator("#run-state")).to_have_text("succeeded")


PHONE = {"width": 390, "height": 844}


def test_pages_fit_a_phone_and_an_opened_message_fits_a_laptop(
    server: Server, browser: Browser
) -> None:
    # A failed run: its message quotes the model's error lines, its site a long word.
    run_id = start_run(server, "toy", albedo=0.95, site="x" * 160)
    server.wait_for_run(run_id)
    context = browser.new_context(viewport=PHONE)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    log_in(page, server, "admin")
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    for path in ("/", "/runs", f"/runs/{run_id}", "/sweeps", "/settings", "/admin/outbox"):
        page.goto(server.url + path)
        expect(page.locator("main h1").first).to_be_visible()
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{path} is {wide} px wider than a {PHONE['width']} px phone"
        # Every link of the navigation is inside the window, none cut off at its right.
        right = page.evaluate(
            "Math.max(...[...document.querySelectorAll('header nav a')]"
            ".map(a => a.getBoundingClientRect().right))"
        )
        assert right <= PHONE["width"], f"{path}: the navigation ends at {right} px"
    context.close()

    page = dark_laptop_page(browser, server)
    page.goto(f"{server.url}/admin/outbox")
    page.locator("#outbox summary").first.click()
    expect(page.locator("#outbox pre").first).to_be_visible()
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"an opened message makes the outbox {wide} px wider than the window"
