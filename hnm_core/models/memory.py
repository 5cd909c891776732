"""The C heap around model work: freed pages reused while a model trains, then handed back to the system, so that
training pays no page faults for memory it just freed, and a long process (a proof of many arms, the studio's
server) does not keep every stage's peak.

glibc's malloc keeps the heap pages of freed allocations for reuse. Training and encoding free gigabytes of
activations and tokenizer buffers of ever different sizes, from several threads (each with its own arena), and
those pages stay resident: measured on cacm (`hnm prove`, one thread), 3.7 GB after the first trained arm and
6.6 GB after the second, 0.7 and 1.0 GB after `malloc_trim(0)`; without it a proof of fifteen arms passed 14 GB.

glibc also maps every allocation over 32 MiB afresh and unmaps it when freed, and a training step allocates and frees
many that size (one batch's attention scores, 32 rows x 12 heads x 256 x 256 bf16 values, are 48 MiB), so the kernel
faults in and zeroes the same memory again on every step. `reusing_heap()`, around every training (and every encoding:
hnm_core.retrieve.dense.encode_batches), serves them from the heap and keeps what is freed for the next step. Measured
on NFCorpus (`hnm train`, 10 steps of 16 five-text rows, bf16, one thread): 181 s with 53 of them in the kernel and
23.5 million page faults before; 132 s, 8 s and 2.2 million with it; the same loss to the last digit; a peak of 9.8 GB
against 8.0 GB, because freed blocks wait in the heap for reuse instead of going back at once (docs/proof.md has the
table; bench/bench_heap.py measures it). `HNM_REUSE_HEAP=0 hnm train ...` trains with glibc's defaults, slower and at
the lower peak; whoever sets glibc's own malloc variables (`MALLOC_MMAP_MAX_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_MMAP_THRESHOLD_`, or `glibc.malloc` tunables) keeps them too.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["release_memory", "reusing_heap"]


def _glibc() -> ctypes.CDLL | None:
    """The C library where it is glibc (malloc_trim and mallopt), or None (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _glibc()
_TRIM = _LIBC.malloc_trim if _LIBC is not None else None
# mallopt's parameters (malloc.h). Setting any of them stops glibc from raising its mapping threshold as it sees large
# blocks freed (from 128 KiB up to 32 MiB, the trim threshold at twice it), so when the last model work ends they are
# set to where that rise ends in any process that has run a model, not to the 128 KiB it starts from: left there, every
# block over 128 KiB would be mapped afresh (measured with MALLOC_MMAP_MAX_ set by hand: slower than no setting at all).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_SETTLED_MMAP_THRESHOLD = 32 * 2**20
_SETTLED_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 2 * _SETTLED_MMAP_THRESHOLD, 65536
_NEVER_TRIM = -1  # mallopt(3): -1 turns trimming off (a step frees more than the 2 GiB an int could say)
# HNM_REUSE_HEAP=0 keeps glibc's defaults (the lower peak); so does any malloc variable of glibc's that the user set.
_LEFT_ALONE = (os.environ.get("HNM_REUSE_HEAP", "1") == "0"
               or any(name in os.environ for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"))
               or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))
_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def reusing_heap() -> Iterator[None]:
    """While the block runs, glibc serves every allocation from its heap and keeps what is freed for the next one (no
    fresh mapping per large block, no trimming of the heap's top); afterwards glibc's settled defaults come back and
    `release_memory` hands the freed pages to the system. Nested or concurrent blocks keep the heap reused until the
    last one ends, and only that one hands the pages back (an encoding's slices, one block each inside the whole
    encoding's, keep the pages from one slice to the next). Elsewhere than glibc, with HNM_REUSE_HEAP=0, or where the
    environment sets glibc's malloc variables, the allocator is left as it is and only `release_memory` follows the
    last block."""
    global _depth
    own = _LIBC is not None and not _LEFT_ALONE
    with _lock:
        if _depth == 0 and own:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            last = _depth == 0
            if last and own:
                _LIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                _LIBC.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
                _LIBC.mallopt(_M_TRIM_THRESHOLD, _SETTLED_TRIM_THRESHOLD)
        if last:
            release_memory()


def release_memory() -> bool:
    """Collect Python's garbage, then give the C heap's free pages back to the system; True when they were given
    back (glibc), False where the platform has no such call (its allocator then decides)."""
    gc.collect()
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
