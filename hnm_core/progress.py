"""One progress protocol for every long step, so the CLI (tqdm) and the app (st.progress) show the same thing."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report that `done` of `total` units of `stage` are finished. Called with done=0 first."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The default reporter: says nothing."""


class TqdmProgress:
    """Adapts the Progress protocol to one tqdm bar per stage (used by the CLI)."""

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
