"""The studio in a real browser: Debian's Chromium, driven by playwright, against `streamlit run app.py` on a
loopback port. Loads the demo, mines, opens the map, lassoes documents, moves the ceiling slider and watches the
counts change, builds the export; then, in a second session, picks a table row (ringed on the map), clicks a
sampled negative (its detail and reason), marks it an unlabelled positive and checks the export leaves it out of the
negatives. Saves a screenshot of every step under test-artifacts/ (docs/screenshots/ holds copies).

Needs /usr/bin/chromium (`apt-get install chromium`; never `playwright install`): skipped without it.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Mining the sample with MiniLM takes ~15-30 s on two cores and the first UMAP map ~30 s (numba JIT); generous.
SLOW_STEP_MS = 300_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(session_cache, tmp_path_factory) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port, with its own log; stopped after the module."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium) to run the "
                    "browser test")
    port = free_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {**os.environ, "HNM_CACHE_DIR": str(session_cache)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.goto(server)
        yield tab
        browser.close()


def settle(tab, timeout: float = SLOW_STEP_MS) -> None:
    """Wait until the script run is over and every lazily loaded element (metrics, tables) has drawn."""
    tab.wait_for_function(
        """() => { const app = document.querySelector('.stApp');
                   return app && app.getAttribute('data-test-script-state') === 'notRunning'
                          && !document.querySelector('[data-testid="stSkeleton"]'); }""",
        timeout=timeout,
    )


def shoot(tab, name: str) -> Path:
    """A screenshot of the whole page: the viewport is stretched to the main area's height first (Streamlit
    scrolls inside it, so a plain full-page screenshot stops at the window)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = tab.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    tab.set_viewport_size({"width": 1280, "height": max(900, int(height))})
    time.sleep(0.5)  # plotly relayouts on resize
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path))
    tab.set_viewport_size({"width": 1280, "height": 900})
    return path


def go(tab, title: str) -> None:
    tab.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    tab.get_by_role("heading", name=title, level=1).wait_for()
    settle(tab)


def click_at(tab, chart, x: float, y: float, expect) -> None:
    """Click the map at plot pixel (x, y) until `expect` (a locator) shows: plotly picks the clicked point from its
    hover data, which a mouse move fills, and a click landing while plotly redraws the last rerun selects nothing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = chart.locator(".nsewdrag").first.bounding_box()
    for _ in range(3):
        tab.mouse.move(box["x"] + x - 8, box["y"] + y)
        tab.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        time.sleep(0.5)
        tab.mouse.down()
        tab.mouse.up()
        try:
            expect.wait_for(timeout=15_000)
            return
        except PlaywrightTimeout:
            settle(tab)
    expect.wait_for(timeout=1_000)


def metric(tab, label: str) -> str:
    box = tab.get_by_test_id("stMetric").filter(has=tab.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return box.get_by_test_id("stMetricValue").inner_text()


def test_demo_in_a_real_browser(page):
    tab = page
    tab.get_by_role("button", name="Load the sample").click()
    tab.get_by_role("heading", name="Loaded: sample_data").wait_for()
    settle(tab)
    assert metric(tab, "Documents") == "253"
    shoot(tab, "01-data")

    go(tab, "Mine")
    tab.get_by_role("button", name="Run").click()
    tab.get_by_text("candidates for 42 queries").wait_for(timeout=SLOW_STEP_MS)
    settle(tab)
    shoot(tab, "02-mine")

    go(tab, "Explore")
    chart = tab.locator(".js-plotly-plot").first
    chart.wait_for(timeout=SLOW_STEP_MS)
    settle(tab)
    legend = chart.locator(".legend").text_content()
    assert "labelled positive" in legend and "query" in legend and "hard negative (selected)" in legend
    shoot(tab, "03-explore")
    # Lasso a square around the query's point (the last trace): the page lists the documents inside.
    chart.scroll_into_view_if_needed()
    chart.locator('.modebar-btn[data-title="Lasso Select"]').click()
    box = chart.locator(".nsewdrag").first.bounding_box()
    qx, qy = chart.evaluate("""gd => { const t = gd.data[gd.data.length - 1], xa = gd._fullLayout.xaxis,
                                              ya = gd._fullLayout.yaxis;
                                        return [xa.d2p(t.x[0]), ya.d2p(t.y[0])]; }""")
    # A 180-px square around it, kept inside the plot's drag area (a press outside it draws no lasso).
    cx, cy = box["x"] + qx, box["y"] + qy
    left, right = max(box["x"] + 2, cx - 90), min(box["x"] + box["width"] - 2, cx + 90)
    top, bottom = max(box["y"] + 2, cy - 90), min(box["y"] + box["height"] - 2, cy + 90)
    tab.mouse.move(left, top)
    tab.mouse.down()
    for x, y in ((right, top), (right, bottom), (left, bottom), (left, top)):
        tab.mouse.move(x, y, steps=8)
    tab.mouse.up()
    tab.get_by_text("Selected on the map:").wait_for(timeout=60_000)
    settle(tab)
    shoot(tab, "03-explore-selection")

    go(tab, "Tune")
    ceiling = tab.get_by_test_id("stCheckbox").filter(has_text="Ceiling")
    ceiling.click()
    slider = tab.get_by_role("slider", name="Ceiling value")
    tab.wait_for_function("() => !document.querySelector('input[aria-label=\"Ceiling value\"]').disabled")
    settle(tab)
    shoot(tab, "04-tune")
    # Home then End: one keypress each, moving the ceiling to the bottom of the score range (every candidate is
    # flagged) and back to the top (the ceiling flags none), so each press is one rerun that changes the count.
    repaints = []
    for key in ("Home", "End"):
        before = metric(tab, "False negatives")
        slider.focus()
        started = time.perf_counter()
        slider.press(key)
        tab.wait_for_function(
            """([label, old]) => { const box = [...document.querySelectorAll('[data-testid="stMetric"]')]
                   .find(m => m.querySelector('[data-testid="stMetricLabel"]').innerText.trim() === label);
                 return box && box.querySelector('[data-testid="stMetricValue"]').innerText !== old; }""",
            arg=["False negatives", before], timeout=30_000,
        )
        repaints.append(time.perf_counter() - started)
        settle(tab)
    assert float(slider.input_value()) == float(slider.get_attribute("max"))
    assert int(metric(tab, "False negatives").replace(",", "")) < int(before.replace(",", ""))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "repaint-seconds.txt").write_text(" ".join(f"{t:.3f}" for t in repaints) + "\n", encoding="utf-8")
    assert max(repaints) < 1.0, f"slider repaints took {repaints} s"
    ceiling.click()  # off again: export what the default rules keep
    settle(tab)

    tab.get_by_role("button", name="Run the audit").click()
    tab.get_by_text("Leak now").wait_for(timeout=SLOW_STEP_MS)
    settle(tab)
    tab.get_by_role("button", name="Apply the recommendation").wait_for()
    shoot(tab, "tune-audit")

    go(tab, "Export")
    tab.get_by_role("button", name="Build the files").click()
    tab.get_by_text("Download all as a zip").wait_for(timeout=60_000)
    settle(tab)
    assert tab.get_by_text("triplet.parquet").count() >= 1
    shoot(tab, "05-export")


# The map's traces as the browser drew them (_fullData: numpy arrays arrive base64-encoded in `data` and are decoded
# there): name, whether it is drawn in the legend (a kind's markers) or is a click target (out of the legend, with
# the kind's hover data), and per point its customdata (the last item is the document's position in the collection)
# and its pixel position inside the plot area.
_TRACES_JS = """gd => gd._fullData.map(t => ({
    name: t.name || '', legend: t.showlegend !== false,
    size: (t.marker && typeof t.marker.size === 'number') ? t.marker.size : 6,
    points: Array.from(t.x || []).map((x, i) => ({
        data: t.customdata ? (typeof t.customdata[i] === 'object' ? Array.from(t.customdata[i]) : t.customdata[i])
                           : null,
        px: gd._fullLayout.xaxis.d2p(x), py: gd._fullLayout.yaxis.d2p(t.y[i]) })) }))"""


def map_traces(chart) -> list[dict]:
    return chart.evaluate(_TRACES_JS)


def clearest_point(traces: list[dict], prefix: str, box: dict) -> tuple[dict, float]:
    """The point of the click targets named `prefix` inside the plot that other drawn markers come least near, and
    its clearance: the pixels between its centre and the nearest other marker's edge, plus 3, so that the point is
    plainly the one clicked."""
    trace = next(t for t in traces if not t["legend"] and t["name"].startswith(prefix))
    others = [(p, t["size"] / 2 + 3) for t in traces if t["legend"] and t["name"] != trace["name"]
              for p in t["points"]]
    best, clearance = None, -math.inf
    for point in trace["points"]:
        if not (12 < point["px"] < box["width"] - 12 and 12 < point["py"] < box["height"] - 12):
            continue
        room = min((math.dist((point["px"], point["py"]), (o["px"], o["py"])) - reach for o, reach in others),
                   default=math.inf)
        if room > clearance:
            best, clearance = point, room
    assert best is not None, f"no point of {prefix!r} is inside the map"
    return best, clearance


def test_explore_detail_table_picks_and_a_verdict_in_a_real_browser(server, page, session_cache):
    import pandas as pd

    # a session of its own (a new browser context): it loads and mines for itself, from the embedding cache
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    try:
        tab.goto(server)
        tab.get_by_role("button", name="Load the sample").click()
        tab.get_by_role("heading", name="Loaded: sample_data").wait_for()
        settle(tab)
        go(tab, "Mine")
        tab.get_by_role("button", name="Run").click()
        tab.get_by_text("candidates for 42 queries").wait_for(timeout=SLOW_STEP_MS)
        settle(tab)
        go(tab, "Explore")
        chart = tab.locator(".js-plotly-plot").first
        chart.wait_for(timeout=SLOW_STEP_MS)
        settle(tab)

        # Pick the third row of the candidates table (the first candidate after the query's two positives at
        # most): its detail opens, and the map rings that document.
        grid = tab.get_by_test_id("stDataFrame").last
        grid.scroll_into_view_if_needed()
        frame = grid.bounding_box()
        tab.mouse.click(frame["x"] + 12, frame["y"] + 35 * 3.5)
        tab.get_by_text("Detail: ").wait_for(timeout=60_000)
        settle(tab)
        picked_doc = tab.get_by_text("Detail: ").inner_text().split("Detail: ", 1)[1].strip()
        traces = map_traces(chart)
        ring = next(t for t in traces if t["name"].startswith("picked in the table"))
        assert len(ring["points"]) == 1
        position = ring["points"][0]["data"]
        assert any(p["data"][0] == picked_doc and int(p["data"][-1]) == position
                   for t in traces if not t["legend"] and t["name"] != "query" for p in t["points"])
        assert traces[-1]["name"] == "query" and traces[-2]["name"].startswith("labelled positive")
        shoot(tab, "explore-table-pick")

        # Click a sampled negative on the map: the detail panel shows it with its reason.
        chart.scroll_into_view_if_needed()
        box = chart.locator(".nsewdrag").first.bounding_box()
        point, clearance = clearest_point(map_traces(chart), "hard negative (selected)", box)
        for _ in range(4):  # zoom in on it (scroll zoom: markers keep their size, points move apart)
            if clearance > 0:
                break
            tab.mouse.move(box["x"] + point["px"], box["y"] + point["py"])
            tab.mouse.wheel(0, -400)
            time.sleep(1.0)
            point, clearance = clearest_point(map_traces(chart), "hard negative (selected)", box)
        assert clearance > 0, "every sampled negative is covered by another marker, even zoomed in"
        doc_id = point["data"][0]
        detail = tab.get_by_text(f"Detail: {doc_id}")
        click_at(tab, chart, point["px"], point["py"], detail)
        settle(tab)
        reason = tab.get_by_test_id("stMarkdownContainer").filter(has_text="hard band, rank ").first
        assert ": selected" in reason.inner_text()  # the reason, as the detail panel writes it
        shoot(tab, "explore-detail")

        # Mark it as an unlabelled positive: the page re-curates, and the export leaves it out of the negatives.
        tab.get_by_label("Note (optional, kept with the verdict)").fill("answers the question")
        tab.get_by_role("button", name="Unlabelled positive").click()
        marked = tab.get_by_text(f"Marked {doc_id} as unlabelled positive for ")
        marked.wait_for(timeout=60_000)
        settle(tab)
        query_id = marked.inner_text().split(" for ", 1)[1].split(";", 1)[0]
        tab.get_by_test_id("stMarkdownContainer").filter(
            has_text="corrected by you: unlabelled positive (answers the question)").first.wait_for()
        assert any(t["name"].startswith("unlabelled positive (your verdict)") for t in map_traces(chart))
        shoot(tab, "explore-verdict")

        # Withdraw it: the rules label it again; then mark it once more for the export below.
        tab.get_by_role("button", name="Withdraw").click()
        tab.get_by_text(f"Withdrew your verdict on {doc_id} for {query_id}.").wait_for(timeout=60_000)
        settle(tab)
        assert not any(t["name"].startswith("unlabelled positive (your verdict)") for t in map_traces(chart))
        tab.get_by_role("button", name="Unlabelled positive").click()
        tab.get_by_text(f"Marked {doc_id} as unlabelled positive for {query_id}").wait_for(timeout=60_000)
        settle(tab)

        go(tab, "Export")
        tab.get_by_role("button", name="Build the files").click()
        tab.get_by_text("Download all as a zip").wait_for(timeout=60_000)
        settle(tab)
        folder = Path(tab.get_by_text("Files in ").inner_text().split("Files in ", 1)[1].strip().rstrip(":"))
        labelled = pd.read_parquet(folder / "pool.parquet").set_index(["query_id", "doc_id"])
        row = labelled.loc[(query_id, doc_id)]
        assert row["label"] == "unlabelled_positive" and not row["selected"]
        triplets = pd.read_parquet(folder / "triplet.parquet")
        from hnm_core.data import load_collection

        sample = load_collection(ROOT / "sample_data")  # the pool export carries ids; the triplets carry the texts
        doc_text = sample.doc_texts[sample.doc_index[doc_id]]
        query_text = sample.query_texts[sample.query_index[query_id]]
        assert doc_text not in set(triplets.loc[triplets["anchor"] == query_text, "negative"])
        manifest = (folder / "manifest.json").read_text(encoding="utf-8")
        assert '"unlabelled_positive": 1' in manifest
        shoot(tab, "export-verdict")
    finally:
        context.close()
        for path in (session_cache / "overrides").glob("*.jsonl"):  # the cache outlives this test
            path.unlink()
