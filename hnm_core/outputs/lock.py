"""One run at a time per output folder.

`claim(out)` holds an OS lock for the output folder `out` while its body runs: the CLI claims --out before any work
and `outdir.write_output` claims the folder it writes, so a second run on the same folder (another process, or a
studio session in another thread) is refused at once, instead of after its whole computation ("exists and is not
empty"). The lock file is in the temporary folder, named by a hash of `out`'s resolved path, so nothing is written
beside `out`; the OS releases the lock when its holder dies, by kill -9 too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ExportError

__all__ = ["claim"]

# Claims this process holds, by (lock file, thread): writing the folder it claimed, a run claims it again.
_CLAIMED: dict[tuple[Path, int], int] = {}


def _lock_path(out: str | Path) -> Path:
    """The lock file of the output folder `out` (links followed, so two spellings of one folder share it)."""
    name = hashlib.blake2b(os.path.realpath(Path(out).expanduser()).encode(), digest_size=16).hexdigest()
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"hnm-{user}" / f"{name}.lock"


@contextmanager
def claim(out: str | Path) -> Iterator[None]:
    """Hold the output folder `out` for the body; raise ExportError at once if another run holds it. Where the lock
    file cannot be made (a temporary folder hnm cannot write), the body runs without it."""
    from filelock import FileLock, Timeout

    path = _lock_path(out)
    key = (path, threading.get_ident())
    if key in _CLAIMED:
        _CLAIMED[key] += 1
        try:
            yield
        finally:
            _CLAIMED[key] -= 1
        return
    lock: FileLock | None = FileLock(path)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise ExportError(f"{out} is being written by another hnm run (it holds the lock {path}). Fix: wait for it "
                          "to finish (then pass --overwrite to replace what it wrote), or choose another folder for "
                          "--out") from None
    except OSError:
        lock = None
    _CLAIMED[key] = 1
    try:
        yield
    finally:
        del _CLAIMED[key]
        if lock is not None:
            path.unlink(missing_ok=True)  # while still held: filelock retries a file unlinked under it
            lock.release()
