"""The hnm Progress protocol `(stage, done, total)` drawn as one st.progress bar per stage, and the Run / Stop buttons
of the pages that start long runs (Mine, Train)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from hnm_core.wording import duration

__all__ = ["StreamlitProgress", "eta", "run_buttons", "RESUMED_GAP"]

# Units reported less than this after the previous report were read back from the cache (a resumed run reads a saved
# part in milliseconds; encoding or scoring a batch takes far longer), so they say nothing of this run's pace.
RESUMED_GAP = 0.05


def eta(elapsed: float, done: int, total: int) -> str:
    """The time left for `total - done` units at the pace of `done` units that took `elapsed` seconds."""
    return duration(elapsed / done * (total - done))


class StreamlitProgress:
    """Draws a bar per stage in the current container, created on the stage's first report.

    Updates closer than `min_step` (a fraction of the stage) and `min_seconds` are dropped, except the last one: each
    update is a websocket message, and bars drawn inside a cached function are recorded for replay, so a million-row
    encode must not send a million of them; a slow stage still moves every `min_seconds`, which is also how soon a
    Stop click ends the run (see run_buttons). `log` keeps (stage, seconds) of every finished stage for the page to
    show, `last` the latest (done, total) reported per stage, shown or not. The bars of `eta_stages` (every stage
    when None) also say how long is left, at the pace of the work this run did itself: units that came back from
    the cache at once (a run resumed after a Stop, see RESUMED_GAP) count neither as work nor as time, so a
    resumed encode is not promised to end at the speed of reading its saved part.

    clock: seconds (tests pass their own).
    """

    def __init__(self, min_step: float = 0.01, eta_stages: tuple[str, ...] | None = (),
                 min_seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.min_step = min_step
        self.min_seconds = min_seconds
        self.eta_stages = eta_stages
        self._clock = clock
        self._bars: dict[str, Any] = {}
        self._shown: dict[str, tuple[float, float]] = {}
        self._started: dict[str, float] = {}
        # stage -> (time and done of its last report, seconds and units of the work done in this run)
        self._pace: dict[str, tuple[float, int, float, int]] = {}
        self.log: list[tuple[str, float]] = []
        self.last: dict[str, tuple[int, int]] = {}

    def unfinished(self) -> tuple[str, int, int] | None:
        """(stage, done, total) of the last stage reported and not finished: where a stopped run stopped."""
        open_stages = [(stage, done, total) for stage, (done, total) in self.last.items() if done < total]
        return open_stages[-1] if open_stages else None

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.last[stage] = (done, total)
        fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        now = self._clock()
        at, before, seconds, units = self._pace.get(stage, (now, done, 0.0, 0))
        if done > before and now - at >= RESUMED_GAP:
            seconds, units = seconds + now - at, units + done - before
        self._pace[stage] = (now, done, seconds, units)
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = st.progress(0.0, text=stage)
            self._started[stage] = now
            self._shown[stage] = (-1.0, now)
        shown, shown_at = self._shown[stage]
        if fraction < 1.0 and (fraction <= shown or (fraction - shown < self.min_step
                                                     and now - shown_at < self.min_seconds)):
            return
        if fraction >= 1.0 and shown >= 1.0:
            return
        self._shown[stage] = (fraction, now)
        text = f"{stage}: {done:,} / {total:,}"
        if (self.eta_stages is None or stage in self.eta_stages) and units and done < total:
            # `units` took `seconds`; total - done are left
            text += f" · about {eta(seconds, units, units + total - done)} left"
        bar.progress(fraction, text=text)
        if fraction >= 1.0:
            self.log.append((stage, now - self._started[stage]))


def run_buttons(label: str, run_key: str, stop_key: str, *, disabled: bool = False) -> bool:
    """A primary `label` button and a Stop button beside it; True when `label` was pressed.

    A click on Stop reruns the page, and Streamlit ends the run in flight at its next drawing call: the next
    progress update (StreamlitProgress), so it stops between two batches or steps, keeping what the run has saved
    (cached embeddings and scores, finished arms, a training's last checkpoint); pressing `label` again resumes
    from there. In the run after a stop, `st.session_state[stop_key]` is True.
    """
    buttons = st.columns([1, 1, 4])
    run = buttons[0].button(label, type="primary", key=run_key, icon=":material/play_arrow:", disabled=disabled)
    buttons[1].button("Stop", key=stop_key, icon=":material/stop:")
    return run
