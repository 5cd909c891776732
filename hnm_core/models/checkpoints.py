"""Trainings that survive being stopped: a training saves itself every few minutes into the cache, and the same
training started again resumes from its last checkpoint, to the same weights as a run that was never stopped.

A training is keyed by what decides its weights (the training file's hash, the starting weights' fingerprint, every
setting of the recipe, the device), so only the same training resumes; anything else starts afresh. Its checkpoints
live in `<cache>/trainings/<key>/checkpoint-<step>/`, written by the transformers Trainer (weights, optimizer,
scheduler, random states, trainer state). A checkpoint counts only once `hnm-checkpoint.json` is in it: the hash of
each file the Trainer wrote, the seconds trained so far, written atomically after the Trainer finished. A resume
verifies every hash first; a damaged or half-written checkpoint is removed with a warning and an older one (or the
start) is used. The older checkpoints are removed once a newer one is complete, and the whole folder once the
training finishes, so a cache holds at most one checkpoint per interrupted training (about 260 MB for MiniLM).

When to save is paced by the clock (`minutes`), which decides only what a stopped run loses: a resume restores the
optimizer, the learning-rate schedule, the random states and the position in the batches, so the weights are the
same bit for bit wherever the stops fall (tests/test_train.py). Saving also logs the loss of the steps since the last
log, so the mean training loss of a resumed run is the whole run's.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from ..checked_files import locked
from ..errors import CacheWarning
from ..manifest import atomic_write_bytes, digest, file_digest
from ..progress import Progress, no_progress

__all__ = ["Checkpoints", "Resume", "Session", "session", "report_steps"]

_MARK = "hnm-checkpoint.json"
_PREFIX = "checkpoint-"


@dataclass(frozen=True)
class Resume:
    """A verified checkpoint: its folder, the step it holds, the seconds trained to reach it, and the sum of the
    per-step losses of those steps."""

    folder: Path
    step: int
    seconds: float
    loss_sum: float


class Checkpoints:
    """The checkpoint folder of one training under the cache folder `root` (default $HNM_CACHE_DIR or
    ~/.cache/hnm): `key` is every value that decides its weights; `minutes` how often it saves (0: never)."""

    def __init__(self, root: str | Path | None, key: dict[str, Any], minutes: float) -> None:
        self.folder = (Path(root) if root is not None else default_cache_dir()) / "trainings" / digest(key)
        self.key = key
        self.minutes = minutes

    def hold(self, on_wait: Callable[[], None] | None = None) -> Any:
        """A lock in the folder for the whole training: a second run of the same training waits for the first,
        calling `on_wait` every half second (and, once the first has finished and removed the folder, trains
        afresh)."""
        return locked(self.folder / ".lock", on_wait)

    def latest(self) -> Resume | None:
        """The newest checkpoint whose files match their recorded hashes; damaged ones are removed (with a
        CacheWarning), unmarked ones (a save that was stopped) silently."""
        if not (self.folder / "key.json").is_file():
            return None
        for step, path in sorted(self._steps(), reverse=True):
            mark = path / _MARK
            if not mark.is_file():
                shutil.rmtree(path, ignore_errors=True)
                continue
            try:
                record = json.loads(mark.read_text(encoding="utf-8"))
                damaged = [name for name, want in record["files"].items() if file_digest(path / name) != want]
            except (OSError, ValueError, KeyError, TypeError):
                damaged = [_MARK]
            if damaged:
                warnings.warn(CacheWarning(f"{path}: {', '.join(damaged)} changed after it was saved; the training "
                                           "resumes from an earlier point"), stacklevel=2)
                shutil.rmtree(path, ignore_errors=True)
                continue
            return Resume(path, step, float(record["seconds"]), float(record["loss_sum"]))
        return None

    def callback(self, resume: Resume | None) -> Any:
        """The TrainerCallback that asks for a save (and a log, so the loss so far is recorded) every `minutes`, and
        marks each finished save; a resumed training's seconds and loss go on from `resume`'s."""
        from transformers import TrainerCallback

        outer = self
        interval = self.minutes * 60
        seconds_before = resume.seconds if resume else 0.0

        class _Saving(TrainerCallback):
            def __init__(self) -> None:
                self.started = self.last = time.perf_counter()
                self.loss_sum, self.logged_step = (resume.loss_sum, resume.step) if resume else (0.0, 0)

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step < state.max_steps and time.perf_counter() - self.last >= interval:
                    control.should_save = control.should_log = True

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    self.loss_sum += logs["loss"] * (state.global_step - self.logged_step)
                    self.logged_step = state.global_step

            def on_save(self, args, state, control, **kwargs):
                self.last = time.perf_counter()
                outer._mark(state.global_step, seconds_before + self.last - self.started, self.loss_sum)

        return _Saving()

    def start(self) -> str:
        """Prepare the folder for a training's checkpoints (written by the Trainer as its output_dir)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        key = json.dumps(self.key, indent=2, sort_keys=True, default=str).encode()
        if not (self.folder / "key.json").is_file():
            atomic_write_bytes(self.folder / "key.json", key)
        return str(self.folder)

    def clear(self) -> None:
        """Remove the folder: the training finished."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _mark(self, step: int, seconds: float, loss_sum: float) -> None:
        path = self.folder / f"{_PREFIX}{step}"
        files = {str(f.relative_to(path)): file_digest(f) for f in sorted(path.rglob("*")) if f.is_file()}
        record = {"step": step, "seconds": round(seconds, 3), "loss_sum": loss_sum, "files": files}
        atomic_write_bytes(path / _MARK, json.dumps(record, indent=2).encode())
        for other, older in self._steps():
            if other != step:
                shutil.rmtree(older, ignore_errors=True)

    def _steps(self) -> list[tuple[int, Path]]:
        return [(int(p.name[len(_PREFIX):]), p) for p in self.folder.glob(f"{_PREFIX}*")
                if p.is_dir() and p.name[len(_PREFIX):].isdigit()]


@dataclass(frozen=True)
class Session:
    """One Trainer run: the output_dir and callbacks to give the Trainer, and the checkpoint it resumes from."""

    output_dir: str
    callbacks: tuple[Any, ...]
    resume: Resume | None

    @property
    def resume_from(self) -> str | None:
        """The `resume_from_checkpoint` argument of `Trainer.train`."""
        return str(self.resume.folder) if self.resume else None

    @property
    def resumed_step(self) -> int:
        """The step the run resumed from (0: it started afresh)."""
        return self.resume.step if self.resume else 0

    @property
    def seconds_before(self) -> float:
        """The seconds earlier runs spent reaching the checkpoint it resumed from."""
        return self.resume.seconds if self.resume else 0.0

    def mean_loss(self, steps: int, this_run: float) -> float:
        """The whole training's mean loss from the Trainer's mean over this run's steps."""
        if self.resume is None:
            return this_run
        return (self.resume.loss_sum + this_run * (steps - self.resumed_step)) / max(steps, 1)


@contextmanager
def session(checkpoints: Checkpoints | None, scratch: str, progress: Progress = no_progress,
            stage: str = "train") -> Iterator[Session]:
    """A Trainer run with `checkpoints` (or none, in the folder `scratch`): holds the training's lock, finds the
    checkpoint to resume from and, when the body returns, removes the checkpoints (kept when it raises). While
    another run of the same training holds the lock, `progress` shows a stage "`stage`: waiting for ..." that
    ends when this run gets it."""
    if checkpoints is None or checkpoints.minutes <= 0:  # never saving: nothing to resume, no folder or lock
        yield Session(scratch, (), None)
        return
    waiting = f"{stage}: waiting for another run of the same training to finish"
    waited = []

    def on_wait() -> None:
        if not waited:
            progress(waiting, 0, 1)
            waited.append(True)

    with checkpoints.hold(on_wait):
        if waited:
            progress(waiting, 1, 1)
        resume = checkpoints.latest()
        yield Session(checkpoints.start(), (checkpoints.callback(resume),), resume)
        checkpoints.clear()


def report_steps(progress: Progress, stage: str) -> Any:
    """The TrainerCallback that reports a training's optimizer steps to `progress` as `stage`; a resumed training
    reports the steps of its checkpoint at once after the start, as a cache's saved part is (the studio's ETA does
    not count them as this run's pace)."""
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress(stage, 0, state.max_steps)
            if state.global_step:
                progress(stage, state.global_step, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            progress(stage, state.global_step, state.max_steps)

    return _Report()
