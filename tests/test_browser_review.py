"""The Review page in a real browser (Chromium against `streamlit run app.py`): verdicts from the keyboard move the
queue on, Backspace takes the last one back, the estimate appears with the first verdicts, and Tune shows it."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import go, metric, server, settle, shoot  # noqa: F401
from tests.test_browser_newcomer import browser, load_sample_and_mine, new_tab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def draw_heading(tab) -> str:
    heading = tab.get_by_role("heading", name=re.compile(r"^Draw \d+ · query ")).first
    heading.wait_for(timeout=60_000)
    return heading.inner_text()


def press(tab, key: str, then_not: str) -> str:
    """Press `key` on the page (not in a widget) and wait until the draw shown is no longer `then_not`."""
    tab.get_by_role("heading", name="Review", level=1).click()  # focus on the page, not in a widget
    tab.keyboard.press(key)
    tab.wait_for_function("text => ![...document.querySelectorAll('h3')].some(h => h.innerText.startsWith(text))",
                          arg=then_not, timeout=60_000)
    settle(tab)
    return draw_heading(tab)


def test_keyboard_verdicts_move_the_queue_and_estimate_the_export(server, browser):
    context, tab = new_tab(browser, server)
    try:
        load_sample_and_mine(tab)
        go(tab, "Review")
        first = draw_heading(tab)
        assert first.startswith("Draw 1 · query ")
        assert metric(tab, "Unlabelled positives") == "0"
        tab.get_by_text("Judge the draws above").wait_for()

        second = press(tab, "u", first)
        assert metric(tab, "Unlabelled positives") == "1"
        share = metric(tab, "Estimated share")
        assert share.endswith("%"), share
        shoot(tab, "review-after-a-verdict")

        third = press(tab, "n", second)
        assert metric(tab, "Fine as negatives") == "1"
        assert int(third.split()[1]) > int(second.split()[1])

        back = press(tab, "Backspace", third)
        assert back == second and metric(tab, "Fine as negatives") == "0"

        press(tab, "s", second)
        assert metric(tab, "Skipped") == "1"

        go(tab, "Tune")
        tab.get_by_text("Your verdicts on the Review page's queue").wait_for(timeout=60_000)
        shoot(tab, "tune-with-verdicts")
    finally:
        context.close()
