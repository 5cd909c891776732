"""The hnm Progress protocol `(stage, done, total)` drawn as one st.progress bar per stage."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

__all__ = ["StreamlitProgress", "eta"]


def eta(elapsed: float, done: int, total: int) -> str:
    """The time left for `total - done` units at the mean pace of the `done` that took `elapsed` seconds."""
    left = elapsed / done * (total - done)
    return f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"


class StreamlitProgress:
    """Draws a bar per stage in the current container, created on the stage's first report.

    Updates closer than `min_step` (a fraction of the stage) are dropped, except the last one: each update is a
    websocket message, and bars drawn inside a cached function are recorded for replay, so a million-row encode
    must not send a million of them. `log` keeps (stage, seconds) of every finished stage for the page to show.
    The bars of `eta_stages` also say how long is left, from the mean time per unit so far.
    """

    def __init__(self, min_step: float = 0.01, eta_stages: tuple[str, ...] = ()) -> None:
        self.min_step = min_step
        self.eta_stages = eta_stages
        self._bars: dict[str, Any] = {}
        self._shown: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self.log: list[tuple[str, float]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = st.progress(0.0, text=stage)
            self._started[stage] = time.perf_counter()
            self._shown[stage] = -1.0
        if fraction < 1.0 and fraction - self._shown[stage] < self.min_step:
            return
        if fraction >= 1.0 and self._shown[stage] >= 1.0:
            return
        self._shown[stage] = fraction
        text = f"{stage}: {done:,} / {total:,}"
        if stage in self.eta_stages and 0 < done < total:
            text += f" · about {eta(time.perf_counter() - self._started[stage], done, total)} left"
        bar.progress(fraction, text=text)
        if fraction >= 1.0:
            self.log.append((stage, time.perf_counter() - self._started[stage]))
