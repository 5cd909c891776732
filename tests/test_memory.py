"""release_memory gives a fragmented C heap back to the system (the proof loop calls it after every arm); reusing_heap
serves training's large blocks from the heap without a page fault per block (models.fit trains inside it)."""

from __future__ import annotations

import os
import subprocess
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


# Run in a fresh interpreter: how soon glibc reuses a freed block depends on what the process allocated before (a
# test process that imported the whole suite reuses later), which is the thing this test must not depend on.
_FAULTS = """
import resource, torch
from hnm_core.models.memory import reusing_heap

def faults(mib=64):  # minor page faults of allocating, writing and freeing 12 blocks, as a training step's
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(12):
        torch.ones(mib * 2**18, dtype=torch.float32)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

mapped = faults()
with reusing_heap():
    with reusing_heap():  # nested (a teacher fold inside a proof, say): the outer block still reuses after it
        pass
    reused = faults()
# Blocks larger than any the heap kept free (the trim gave their pages back but keeps the address range): mapped
# again under glibc's defaults, reused after one if the heap still kept what is freed.
after = faults(256)
# Blocks of 1 MiB come from the heap after the block as glibc's own threshold would have them, not mapped each time.
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    torch.ones(2**18, dtype=torch.float32)
print(mapped, reused, after, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(**env: str) -> tuple[int, int, int, int]:
    path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **env}
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True, env=env)
    mapped, reused, after, small = map(int, out.stdout.split())
    return mapped, reused, after, small


def _blocks(faults: int) -> float:
    """Page faults in 64 MiB blocks' worth."""
    return faults * os.sysconf("SC_PAGE_SIZE") / (64 * 2**20)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_reusing_heap_reuses_freed_blocks_until_the_last_block_ends():
    mapped, reused, after, small = _faults()
    assert _blocks(mapped) > 8  # glibc's default: each of the 12 blocks mapped afresh and faulted in again
    assert _blocks(reused) < 3, (reused, mapped)  # the first block faulted in, the rest reuse its pages
    assert _blocks(after) > 8 * 4, (after, reused)  # glibc's defaults are back once the last block has ended
    assert _blocks(small) < 1, small  # 200 blocks of 1 MiB: from the heap, not mapped afresh each (200 MiB of faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
@pytest.mark.parametrize("env", [{"HNM_REUSE_HEAP": "0"}, {"MALLOC_MMAP_MAX_": "65536"}])
def test_reusing_heap_leaves_the_allocator_alone_when_told(env):
    mapped, reused, _, _ = _faults(**env)  # turned off, or glibc's own variables set by the user
    assert _blocks(reused) > 8, (reused, mapped)
