"""One progress protocol for every long step, so the CLI (tqdm) and the app (st.progress) show the same thing.

The CLI draws tqdm bars on a terminal; when stderr is a file or a pipe (a log, CI), bars would be written out frame
by frame, so `LineProgress` writes a few plain lines instead, each once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report that `done` of `total` units of `stage` are finished. Called with done=0 first."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The default reporter: says nothing."""


def terminal_progress(stream: TextIO | None = None) -> Progress:
    """The CLI's reporter: tqdm bars when `stream` (default stderr) is a terminal, else LineProgress on it."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return TqdmProgress() if isatty is not None and isatty() else LineProgress(stream)


class TqdmProgress:
    """Adapts the Progress protocol to one tqdm bar per stage (used by the CLI on a terminal)."""

    def __init__(self) -> None:
        self._bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="it", dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            del self._bars[stage]


class LineProgress:
    """Adapts the Progress protocol to plain lines for logs: a stage's start, each further tenth of it or `every_s`
    seconds (whichever comes first, so a slow stage still shows it is alive), and its end with the time it took.
    No line is written twice.

    clock: seconds, for the intervals and the times shown (tests pass their own).
    """

    def __init__(self, stream: TextIO, *, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._every_s = every_s
        self._clock = clock
        # stage -> (its start, the last line's time, tenth and done)
        self._stages: dict[str, tuple[float, float, int, int]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._clock()
        tenth = 10 * done // total if total > 0 else 10
        if stage not in self._stages:
            self._stages[stage] = (now, now, tenth, done)
            if done < total:
                self._write(f"{stage}: {done:,} / {total:,}")
        start, last, last_tenth, last_done = self._stages[stage]
        if done >= total:
            self._write(f"{stage}: {done:,} / {total:,}, done in {now - start:,.1f} s")
            del self._stages[stage]
        elif done > last_done and (tenth > last_tenth or now - last >= self._every_s):
            self._write(f"{stage}: {done:,} / {total:,} ({done / total:.0%}, {now - start:,.0f} s)")
            self._stages[stage] = (start, now, tenth, done)

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()
