"""What a newcomer met in the studio, in a real browser (Chromium via playwright, as tests/test_browser.py): a click
in a dense part of the map takes the nearest point; the detail panel stays on a candidate after a verdict, with
Withdraw; the plain address offers the last work; the Data page shows the loaded source after other pages.
Screenshots go to test-artifacts/ (copies in docs/screenshots/).
"""

from __future__ import annotations

import math
import time

import pytest

from tests.conftest import shared_dataset
from tests.test_browser import SLOW_STEP_MS, click_at, go, server, settle, shoot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every trace as the browser drew it: whether it is in the legend (the drawn markers) or a click target, its marker
# size, and per point its customdata and pixel position inside the plot area.
_TRACES_JS = """gd => gd._fullData.map((t, n) => ({
    name: t.name || '', legend: t.showlegend !== false,
    size: (t.marker && typeof t.marker.size === 'number') ? t.marker.size : 6,
    points: Array.from(t.x || []).map((x, i) => ({ n, i,
        data: t.customdata ? (typeof t.customdata[i] === 'object' ? Array.from(t.customdata[i]) : t.customdata[i])
                           : null,
        px: gd._fullLayout.xaxis.d2p(x), py: gd._fullLayout.yaxis.d2p(t.y[i]) })) }))"""


def new_tab(page_context_browser, url: str):
    """A new browser session (its own context: no cookies, no tab state) on `url`."""
    context = page_context_browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(url)
    settle(tab)
    return context, tab


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def load_sample_and_mine(tab) -> None:
    tab.get_by_role("button", name="Load the sample").click()
    tab.get_by_role("heading", name="Loaded: sample_data").wait_for()
    settle(tab)
    go(tab, "Mine")
    tab.get_by_role("button", name="Run", exact=True).click()
    tab.get_by_text("candidates for 42 queries").wait_for(timeout=SLOW_STEP_MS)
    settle(tab)


def covered_pair(traces: list[dict]) -> tuple[dict, dict] | None:
    """Two drawn candidate markers A, B where B covers A's centre more than 4 px from it and plotly's own rule would
    give a click on A's centre to B: B drawn later, with a marker no bigger (it rates every marker under the pointer
    as equally near, less its radius, and takes the last of equals). No other point lies within 4 px of A (the
    sample has documents of one text, at one place on the map), so A is the nearest point to its centre, clearly.
    None when the map has no such pair."""
    drawn = [(t["size"] / 2, p) for t in traces if t["legend"] and not t["name"].startswith("picked")
             for p in t["points"]]
    candidates = [(r, p) for r, p in drawn if not traces[p["n"]]["name"].startswith("rest of") and p["data"] != -1]
    best = None
    for radius_a, a in candidates:
        if any(0 < math.dist((a["px"], a["py"]), (o["px"], o["py"])) <= 4 or (o is not a and (o["px"], o["py"]) ==
               (a["px"], a["py"])) for _, o in drawn):
            continue
        for radius_b, b in candidates:
            if (b["n"], b["i"]) <= (a["n"], a["i"]) or radius_b > radius_a:
                continue
            gap = math.dist((a["px"], a["py"]), (b["px"], b["py"]))
            if 4 < gap < radius_b - 0.5 and (best is None or gap > best[0]):
                best = (gap, a, b)
    return None if best is None else (best[1], best[2])


def doc_id_at(traces: list[dict], position: int) -> str:
    """The document id of the collection position, from a click target's customdata [id, score, reason, position]."""
    return next(p["data"][0] for t in traces if not t["legend"] for p in t["points"]
                if isinstance(p["data"], list) and int(p["data"][-1]) == position)


def scroll_to(tab, chart) -> None:
    """Scroll the map into view; a rerun that redraws it mid-scroll detaches the element, so settle and try again."""
    from playwright.sync_api import Error as PlaywrightError

    for _ in range(3):
        try:
            chart.scroll_into_view_if_needed(timeout=20_000)
            return
        except PlaywrightError:
            settle(tab)
    chart.scroll_into_view_if_needed(timeout=20_000)


def test_a_map_click_takes_the_nearest_point_and_a_verdict_keeps_the_detail_open(server, browser, session_cache):
    context, tab = new_tab(browser, server)
    try:
        load_sample_and_mine(tab)
        go(tab, "Explore")
        chart = tab.locator(".js-plotly-plot").first
        chart.wait_for(timeout=SLOW_STEP_MS)
        settle(tab)
        # the whole map, where the query's candidates crowd; zoomed out further until two markers overlap
        tab.get_by_text("Zoom to the query's neighbourhood").click()
        settle(tab)
        scroll_to(tab, chart)
        box = chart.locator(".nsewdrag").first.bounding_box()
        pair = covered_pair(chart.evaluate(_TRACES_JS))
        for _ in range(4):
            if pair is not None:
                break
            tab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            tab.mouse.wheel(0, 300)
            time.sleep(1.0)
            pair = covered_pair(chart.evaluate(_TRACES_JS))
        assert pair is not None, "no two of the query's markers overlap on the map, even zoomed out"
        nearest, covering = pair
        traces = chart.evaluate(_TRACES_JS)
        doc_id = doc_id_at(traces, nearest["data"])
        assert doc_id != doc_id_at(traces, covering["data"])
        click_at(tab, chart, nearest["px"], nearest["py"], tab.get_by_text(f"Detail: {doc_id}"))
        settle(tab)
        shoot(tab, "explore-click-nearest")

        # a verdict: the panel stays on the candidate, with the verdict taken and Withdraw, without a second click
        tab.get_by_role("button", name="Bad negative").click()
        tab.get_by_text(f"Marked {doc_id} as bad negative for ").wait_for(timeout=60_000)
        time.sleep(2.0)  # the redrawn map and table drop their selections in a rerun of their own
        settle(tab)
        assert tab.get_by_text(f"Detail: {doc_id}").is_visible()
        assert tab.get_by_text("Your verdict: bad negative").is_visible()
        assert tab.get_by_role("button", name="Withdraw").is_visible()
        shoot(tab, "explore-verdict-kept-open")
        tab.get_by_role("button", name="Withdraw").click()
        tab.get_by_text(f"Withdrew your verdict on {doc_id} for ").wait_for(timeout=60_000)
        time.sleep(2.0)
        settle(tab)
        assert tab.get_by_text(f"Detail: {doc_id}").is_visible()
        assert tab.get_by_text("Your verdict:").count() == 0
    finally:
        context.close()
        for path in (session_cache / "overrides").glob("*.jsonl"):  # the cache outlives this test
            path.unlink()


def test_the_plain_address_offers_the_last_work(server, browser):
    first, tab = new_tab(browser, server)
    try:
        tab.get_by_role("button", name="Load the sample").click()
        tab.get_by_role("heading", name="Loaded: sample_data").wait_for()
        settle(tab)
        assert "session=" in tab.url
    finally:
        first.close()
    second, tab = new_tab(browser, server)  # a new tab on the address without ?session=
    try:
        tab.get_by_text("Your last work").wait_for()
        assert tab.get_by_text("the bundled sample, with its settings").count() == 1
        shoot(tab, "data-resume-offer")
        tab.get_by_role("button", name="Resume it").click()
        tab.get_by_role("heading", name="Loaded: sample_data").wait_for(timeout=60_000)
        settle(tab)
        assert tab.get_by_text("Resumed sample_data and your settings.").count() == 1
        assert tab.get_by_role("button", name="Resume it").count() == 0
    finally:
        second.close()


def test_the_data_page_shows_the_loaded_collection_after_other_pages(server, browser):
    scifact = shared_dataset("scifact")
    context, tab = new_tab(browser, server)
    try:
        tab.get_by_text("Folder or file path").click()
        settle(tab)
        box = tab.get_by_role("textbox", name="Path on the machine running the app")
        box.fill(str(scifact))
        box.press("Enter")
        settle(tab)
        tab.get_by_role("button", name="Load", exact=True).click()
        tab.get_by_role("heading", name="Loaded: scifact").wait_for(timeout=SLOW_STEP_MS)
        settle(tab)
        for title in ("Mine", "Explore", "Data"):
            go(tab, title)
        assert tab.get_by_role("radio", name="Folder or file path").is_checked()
        assert tab.get_by_role("textbox", name="Path on the machine running the app").input_value() == str(scifact)
        assert tab.get_by_text("scifact is loaded from this path").count() == 1
        assert tab.get_by_role("button", name="Load the sample").count() == 0
        assert tab.get_by_role("button", name="Load", exact=True).count() == 0
        shoot(tab, "data-loaded-source")
    finally:
        context.close()
