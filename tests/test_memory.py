"""release_memory gives a fragmented C heap back to the system (the proof loop calls it after every arm)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hnm_core.models.memory import release_memory

_STATM = Path("/proc/self/statm")


def _resident_mib() -> float:
    return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _STATM.exists(), reason="reads /proc (Linux)")
def test_release_memory_returns_a_fragmented_heap():
    blocks = [bytes(4000) for _ in range(100_000)]  # ~400 MiB of malloc'd (not mmap'd) blocks
    keep = blocks[::64]  # one live block in every 64 pins the heap's top: free() alone cannot shrink it
    del blocks
    pinned = _resident_mib()
    assert release_memory() is True
    released = _resident_mib()
    assert pinned - released > 200, (pinned, released)
    del keep  # alive until here
