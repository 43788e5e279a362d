"""The generated site in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The pages are opened from ``file://`` with the network cut off, so anything the site tried to
fetch would fail. Screenshots of each page go to ``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from test_site import REPO, SITE_SUITE, STALE_METHOD, make_leaderboard

from sbbench.leaderboard.render import leaderboard_frame
from sbbench.leaderboard.site import build_site
from sbbench.leaderboard.store import load_entries

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (`apt-get install -y chromium`; .ci/run installs it)")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("browser-leaderboard")
    make_leaderboard(root, tmp_path_factory.getbasetemp() / "result-cache")
    out = tmp_path_factory.mktemp("browser-site") / "site"
    build_site(root, out, [SITE_SUITE])
    return out, load_entries(root, SITE_SUITE)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)  # a fresh temporary profile
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page plus every console error, uncaught exception and failed request it produced."""

    page: Page
    problems: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    tab = Tab(context.new_page())
    tab.page.on("console", lambda message: tab.problems.append(message.text) if message.type == "error" else None)
    tab.page.on("pageerror", lambda error: tab.problems.append(str(error)))
    tab.page.on("requestfailed", lambda request: tab.problems.append(f"request failed: {request.url}"))
    yield tab
    context.close()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def visible_methods(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr:not([hidden])", "rows => rows.map(r => r.cells[0].querySelector('a').textContent)")


def column_values(page: Page, key: str) -> list[float]:
    index = page.eval_on_selector_all("#leaderboard thead th", "hs => hs.map(h => h.dataset.key)").index(key)
    return page.eval_on_selector_all(
        "#leaderboard tbody tr:not([hidden])", f"rows => rows.map(r => parseFloat(r.cells[{index}].dataset.value))")


def test_table_renders_every_entry_sorts_on_header_clicks_and_filters(site: tuple[Path, list], tab: Tab) -> None:
    out, loaded = site
    page = tab.page
    frame = leaderboard_frame(loaded, SITE_SUITE)
    page.goto((out / "index.html").as_uri())
    shoot(page, "index")
    page.click("a:text-is('site-v1')")
    assert page.url.endswith("/site-v1/index.html")
    assert visible_methods(page) == list(frame["method"])
    assert page.inner_text("#shown") == "3 of 3 entries shown"
    assert page.get_attribute(f"tr[data-search^='{STALE_METHOD}']", "class") == "stale"
    shoot(page, "suite")

    page.click("th[data-key='site-lms5/sc_rand_auc'] button")
    assert page.get_attribute("th[data-key='site-lms5/sc_rand_auc']", "aria-sort") == "descending"
    values = column_values(page, "site-lms5/sc_rand_auc")
    assert values == sorted(frame["site-lms5/sc_rand_auc"], reverse=True)
    page.click("th[data-key='site-lms5/sc_rand_auc'] button")
    assert column_values(page, "site-lms5/sc_rand_auc") == sorted(values)
    page.click("th[data-key='method'] button")
    assert visible_methods(page) == sorted(frame["method"])

    page.select_option("#track-filter", "oracle")
    assert visible_methods(page) == ["oracle-randomize-s"]
    assert page.inner_text("#shown") == "1 of 3 entries shown"
    shoot(page, "suite-filtered-oracle")
    page.select_option("#track-filter", "")
    page.check("#hide-stale")
    assert STALE_METHOD not in visible_methods(page) and len(visible_methods(page)) == 2
    page.uncheck("#hide-stale")
    page.fill("#search", "mixup")
    assert visible_methods(page) == [STALE_METHOD]
    page.fill("#search", "no such method")
    assert visible_methods(page) == [] and page.is_visible("#no-match")
    page.fill("#search", "")
    hidden_cells = "els => els.filter(e => e.hidden).length"
    assert page.eval_on_selector_all("#leaderboard [data-task]", hidden_cells) == 0
    page.select_option("#task-filter", "site-lms5")
    assert page.eval_on_selector_all("#leaderboard [data-task]", hidden_cells) == 0, "the only task stays"
    page.evaluate("""() => {  // a task that no column has: every per-task column goes
        const option = document.createElement('option'); option.value = option.text = 'other';
        const select = document.getElementById('task-filter'); select.add(option); }""")
    page.select_option("#task-filter", "other")
    assert page.eval_on_selector_all("#leaderboard th[data-task]:not([hidden])", "els => els.length") == 0
    # method, track, status, score, seeds, hparams
    assert page.eval_on_selector_all("#leaderboard thead th:not([hidden])", "els => els.length") == 6
    page.select_option("#task-filter", "")
    shoot(page, "suite-sorted-by-method")
    assert tab.problems == []


def test_entry_page_opens_from_the_table_with_its_charts_and_no_console_errors(
        site: tuple[Path, list], tab: Tab) -> None:
    out, loaded = site
    page = tab.page
    page.goto((out / "site-v1" / "index.html").as_uri())
    page.click("#leaderboard a:text-is('erm')")
    assert page.url.endswith("/site-v1/entries/erm.html")
    assert page.inner_text("h1").startswith("erm")
    assert page.locator("svg.chart").count() == 4
    box = page.locator("svg.chart").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150, "charts are laid out, not collapsed"
    assert page.locator("table.metrics tbody tr").count() == len(
        next(item for item in loaded if item.entry.method.name == "erm").entry.aggregates["site-lms5"])
    shoot(page, "entry-erm")
    page.goto((out / "site-v1" / "entries" / f"{STALE_METHOD}.html").as_uri())
    assert page.is_visible("text=Stale entry:")
    shoot(page, "entry-stale")
    assert tab.problems == []
