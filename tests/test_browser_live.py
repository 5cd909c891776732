"""The studio keeps work and runs long jobs in a real browser (Chromium via playwright, as tests/test_browser.py):
a reload brings back the pool and the settings; Stop during mining leaves a usable page and a rerun resumes from the
cache; a Tune slider repaints the live view of a 100k-row pool (the time is printed and saved, not asserted).
Screenshots go to test-artifacts/ (tune-live.png, mine-progress.png; copied to docs/screenshots/).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from hnm_core.data import Collection
from hnm_core.pool import Pool, PoolStats, save_pool
from tests.conftest import SHARED_DATASETS
from tests.test_browser import ARTIFACTS, SLOW_STEP_MS, go, metric, page, server, settle, shoot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCIFACT = SHARED_DATASETS / "scifact"


def open_path(tab, path: Path, button: str) -> None:
    """On the Data page: type a folder or file path and press `button` ("Load", "Open the saved pool")."""
    go(tab, "Data")
    tab.get_by_text("Folder or file path").click()
    settle(tab)
    box = tab.get_by_role("textbox", name="Path on the machine running the app")
    box.fill(str(path))
    box.press("Enter")
    settle(tab)
    tab.get_by_role("button", name=button, exact=True).click()
    tab.get_by_role("heading", name=re.compile("^Loaded: ")).wait_for(timeout=SLOW_STEP_MS)
    settle(tab)


def skip_slider(tab):
    return tab.get_by_role("slider", name="Skip top N")


def test_a_reload_brings_back_the_pool_and_the_settings(page, server):
    tab = page
    tab.goto(server)
    settle(tab)
    tab.get_by_role("button", name="Load the sample").click()
    tab.get_by_role("heading", name="Loaded: sample_data").wait_for()
    go(tab, "Mine")
    tab.get_by_role("button", name="Run", exact=True).click()
    tab.get_by_text("candidates for 42 queries").wait_for(timeout=SLOW_STEP_MS)
    go(tab, "Tune")
    slider = skip_slider(tab)
    slider.focus()
    slider.press("End")  # skip-N 0 -> its top (one key: a press during a rerun can be lost): the negatives change
    tab.get_by_text("Against the previous slider state:").wait_for()
    settle(tab)
    skip = float(slider.input_value())
    assert skip > 0
    assert "session=" in tab.url
    negatives, band = metric(tab, "Negatives"), metric(tab, "Hard band")
    shoot(tab, "tune-live")

    tab.reload()
    tab.get_by_role("heading", name="Tune", level=1).wait_for(timeout=SLOW_STEP_MS)
    settle(tab)
    assert float(skip_slider(tab).input_value()) == skip
    assert (metric(tab, "Negatives"), metric(tab, "Hard band")) == (negatives, band)
    go(tab, "Mine")
    assert tab.get_by_text("candidates for 42 queries").count() == 1
    assert tab.get_by_text("Changed since this pool was mined").count() == 0


def encoded(tab) -> int:
    """How many documents the encode bar says are done (0 before it shows)."""
    text = tab.get_by_test_id("stProgress").filter(has_text="encode documents").all_inner_texts()
    found = re.search(r"encode documents: ([\d,]+) /", " ".join(text))
    return int(found.group(1).replace(",", "")) if found else 0


def wait_encoded(tab, at_least: int, timeout: float) -> float:
    started = time.monotonic()
    while encoded(tab) < at_least:
        assert time.monotonic() - started < timeout, f"the encode bar did not reach {at_least} in {timeout} s"
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} is absent")
def test_stop_during_mining_keeps_the_page_usable_and_a_rerun_resumes(page, server, session_cache):
    tab = page
    tab.goto(server)
    settle(tab)
    open_path(tab, SCIFACT, "Load")
    go(tab, "Mine")
    tab.get_by_role("button", name="Run", exact=True).click()
    wait_encoded(tab, 300, SLOW_STEP_MS / 1000)
    assert "left" in tab.get_by_test_id("stProgress").filter(has_text="encode documents").inner_text()
    shoot(tab, "mine-progress")
    tab.get_by_role("button", name="Stop").click()
    note = tab.get_by_text(re.compile(r"Stopped during encode documents at [\d,]+ / 5,183"))
    note.wait_for(timeout=60_000)
    settle(tab)
    assert tab.get_by_role("button", name="Run", exact=True).is_enabled()
    parts = {p: p.stat().st_mtime_ns for p in session_cache.glob("embeddings/*/part-*.npy")}
    cached = sum(int(p.name.split("-")[2]) - int(p.name.split("-")[1]) for p in parts)
    assert cached > 0, "Stop lost what was encoded"

    # a rerun reads the saved slices back (their files untouched) and encodes only the rest
    tab.get_by_role("button", name="Run", exact=True).click()
    wait_encoded(tab, cached + 1, SLOW_STEP_MS / 1000)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in parts.items())
    tab.get_by_role("button", name="Stop").click()
    note.wait_for(timeout=60_000)
    settle(tab)


def synthetic_pool_folder(folder: Path) -> Path:
    """A saved pool of about 100k rows (1,000 queries x 100 candidates, bench_curate's shape), with its collection."""
    from bench.bench_curate import synthetic_pool

    frame = synthetic_pool(1000, 100, seed=0)
    doc_ids = tuple(frame["doc_id"].unique())
    query_ids = tuple(frame["query_id"].unique())
    positive_rows = frame[frame["is_positive"]]
    positives = {q: tuple(g) for q, g in positive_rows.groupby("query_id", sort=False)["doc_id"]}
    collection = Collection("synthetic-100k", doc_ids, tuple(f"passage {d}" for d in doc_ids), query_ids,
                            tuple(f"question {q}" for q in query_ids), positives, source="bench_curate")
    stats = PoolStats(len(query_ids), int((~frame["is_positive"]).sum()), len(positive_rows), 0, 0)
    return save_pool(Pool(frame, collection, stats, {"settings": {}}), folder)


def test_a_tune_slider_repaints_a_100k_row_pool(page, server, tmp_path):
    tab = page
    tab.goto(server)
    settle(tab)
    folder = synthetic_pool_folder(tmp_path / "pool")
    open_path(tab, folder, "Open the saved pool")
    go(tab, "Tune")
    rows = int(re.search(r"Curated ([\d,]+) rows", tab.get_by_text("Curated").first.inner_text()).group(1)
               .replace(",", ""))
    slider = skip_slider(tab)
    repaints = []
    for key in ("End", "Home", "End", "Home"):  # skip-N from the default 0 to its top and back
        before = metric(tab, "Hard band")
        slider.focus()
        started = time.perf_counter()
        slider.press(key)
        tab.wait_for_function(
            """old => { const box = [...document.querySelectorAll('[data-testid="stMetric"]')]
                   .find(m => m.querySelector('[data-testid="stMetricLabel"]').innerText.trim() === 'Hard band');
                 return box && box.querySelector('[data-testid="stMetricValue"]').innerText !== old; }""",
            arg=before, timeout=30_000,
        )
        repaints.append(time.perf_counter() - started)
        settle(tab)
    median = float(np.median(repaints))
    line = f"Tune repaint on a {rows:,}-row pool: " + " ".join(f"{t:.3f}" for t in repaints) + \
        f" s (median {median:.3f} s)"
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "tune-repaint-100k.txt").write_text(line + "\n", encoding="utf-8")
    assert rows >= 100_000
