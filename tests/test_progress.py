"""progress: the CLI's reporter writes a few plain lines, each once, when stderr is not a terminal."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from hnm_core.progress import LineProgress, TqdmProgress, terminal_progress

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Seconds that advance by `step` at every reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_line_progress_writes_the_start_each_tenth_and_the_end_once():
    out = io.StringIO()
    report = LineProgress(out, clock=Clock(0.01))
    for done in range(1001):
        report("encode documents", done, 1000)
        if done < 1000:
            report("encode documents", done, 1000)  # the same count again adds nothing
    lines = out.getvalue().splitlines()
    assert lines[0] == "encode documents: 0 / 1,000"
    assert lines[1].startswith("encode documents: 100 / 1,000 (10%, ")
    assert lines[-1] == "encode documents: 1,000 / 1,000, done in 20.0 s"
    assert len(lines) == 11 and len(set(lines)) == 11


def test_line_progress_shows_a_slow_stage_is_alive_every_interval():
    out = io.StringIO()
    report = LineProgress(out, every_s=30, clock=Clock(20.0))
    for done in (0, 1, 2, 2, 2, 3):  # 20 s between calls
        report("teacher scores", done, 100)
    # 0 starts at 20 s; 1 comes too soon; 2 after 40 s; 2 again is no news however late; 3 comes 60 s after 2
    assert out.getvalue().splitlines() == ["teacher scores: 0 / 100", "teacher scores: 2 / 100 (2%, 40 s)",
                                           "teacher scores: 3 / 100 (3%, 100 s)"]


def test_an_empty_stage_writes_one_line():
    out = io.StringIO()
    LineProgress(out, clock=Clock(1.0))("bm25 search", 0, 0)
    assert out.getvalue() == "bm25 search: 0 / 0, done in 0.0 s\n"


def test_terminal_progress_draws_bars_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(terminal_progress(io.StringIO()), LineProgress)
    assert isinstance(terminal_progress(Terminal()), TqdmProgress)


def test_cli_log_has_each_progress_line_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hnm_core.cli", "pool", str(ROOT / "sample_data"), "--out",
                           str(tmp_path / "pool"), "--sources", "bm25", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "\r" not in done.stderr and len(lines) == len(set(lines))
    assert "bm25 search: 0 / 42" in lines and any(line.startswith("bm25 search: 42 / 42, done in") for line in lines)
