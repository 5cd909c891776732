"""Checked files, the caches' ground: arrays saved atomically under a CRC-32 of their dtype, shape and bytes and
verified on each read, half-written temporaries removed, and one writer per cache entry (an OS lock).

A file damaged outside hnm fails its check (`Damaged`, one line naming it); the caches recompute it with a
CacheWarning (`warn_damaged`), never use it.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import CacheWarning
from .manifest import atomic_path

__all__ = ["Damaged", "checksum", "checksum_seed", "checksum_update", "save_checked", "load_checked", "warn_damaged",
           "remove_temporaries", "locked"]


def checksum(array: np.ndarray) -> str:
    """CRC-32 (about 3 GB/s) of the dtype, the shape and the bytes of `array`; enough to catch damage, not tampering."""
    return f"{checksum_update(checksum_seed(array.dtype, array.shape), array):08x}"


def checksum_seed(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return zlib.crc32(f"{np.lib.format.dtype_to_descr(np.dtype(dtype))}{tuple(shape)}".encode())


def checksum_update(crc: int, array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1), crc)


class Damaged(Exception):
    """A cache file that fails its check; the message is one line naming the file."""


def save_checked(path_for: Callable[[str], Path], array: np.ndarray) -> Path:
    """Save `array` atomically at `path_for(checksum)` and return that path."""
    path = path_for(checksum(array))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return path


def load_checked(path: Path, expected: object, *, mmap: bool = False) -> np.ndarray:
    """The array in `path` if its checksum is `expected`; raises Damaged otherwise (FileNotFoundError if absent)."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError):
        raise Damaged(f"{path}: not a readable .npy file") from None
    if checksum(array) != expected:
        raise Damaged(f"{path}: checksum mismatch")
    return array


def warn_damaged(problem: str) -> None:
    warnings.warn(f"damaged cache file {problem}; recomputing it", CacheWarning, stacklevel=3)


def remove_temporaries(folder: Path) -> None:
    """Remove what killed runs left half-written in `folder` (0-byte or partial `.NAME.*.tmp` files of atomic_path).
    Call it only under the folder's lock: every live writer of the folder holds that lock."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@contextmanager
def locked(lock_path: Path, on_wait: Callable[[], None] | None = None, poll: float = 0.5) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (flock on POSIX: released by the OS if the holder dies, even by
    SIGKILL); `on_wait` is called every `poll` seconds while another process holds it."""
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    while True:
        try:
            lock.acquire(timeout=poll)
            break
        except Timeout:
            if on_wait is not None:
                on_wait()
    try:
        yield
    finally:
        lock.release()
