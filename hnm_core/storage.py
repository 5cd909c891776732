"""The disks hnm writes to: checked before any work, explained when they fill.

`check_cache_dir` refuses a cache folder hnm cannot write (a file, a read-only folder) before the data is read, so
a run does not end on a traceback at its first cache write. `unwritable` tells which folder would stop a write.
`disk_full` is the one message for a write that ran out of space (ENOSPC): it names the folder, the space left and
what was written before the disk filled, and says what was kept intact; the writers (`manifest.atomic_path`,
`outdir.write_output`) remove what they half wrote before they raise it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import DiskFullError, SettingsError

__all__ = ["check_cache_dir", "unwritable", "is_disk_full", "disk_full", "written_under"]


def unwritable(folder: Path) -> Path | None:
    """The folder that stops hnm from writing at `folder`: `folder` itself, or the nearest of its parents that exists
    (hnm would create the rest), when the OS says this user may not create files in it; None when it may. A file in
    the way is left to the caller to name."""
    for path in (folder, *folder.parents):
        if path.exists():
            return path if path.is_dir() and not os.access(path, os.W_OK | os.X_OK) else None
    return None


def check_cache_dir(folder: str | Path | None) -> Path:
    """Raise SettingsError unless hnm can keep its cache at `folder` (None: $HNM_CACHE_DIR, else ~/.cache/hnm): a
    file at its path or at `locks/`, or a folder this user cannot write, is named. Creates nothing. Returns the
    folder."""
    from .cache import default_cache_dir

    root = Path(folder) if folder is not None else default_cache_dir()
    fix = "Fix: point --cache-dir (or $HNM_CACHE_DIR) at a folder you can write to"
    locks = root / "locks"
    blocked = next((p for p in (locks, *locks.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise SettingsError(f"{root}: cannot hold the cache: {blocked} is a file. {fix}")
    stop = unwritable(root) or unwritable(locks)
    if stop is not None:
        raise SettingsError(f"{root}: cannot hold the cache: {stop} is not writable (permission denied). {fix}")
    return root


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` is a write that ran out of space (or of the user's quota)."""
    if isinstance(error, DiskFullError):
        return True
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def written_under(path: Path) -> int:
    """Bytes of the file at `path`, or of every file under the folder at `path` (0 when gone)."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def disk_full(folder: Path, *, written: int = 0, kept: str | None = None) -> DiskFullError:
    """The error for a write into `folder` that ran out of space after `written` bytes; `kept` says what is intact
    (the writer removed what it half wrote)."""
    free = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.is_dir())).free
    had = f"; the write had put {_size(written)} there when it filled, and needs more" if written else ""
    intact = f" Nothing was left half-written: {kept}." if kept else ""
    return DiskFullError(f"{folder}: no space left on the device ({_size(free)} free{had}).{intact} Fix: free "
                         "space on that disk, or write to a folder on another disk (--out, --cache-dir)")


def _size(n: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    step = 0
    while n >= 1000 and step < len(units) - 1:
        n /= 1000
        step += 1
    return f"{n:,.0f} B" if step == 0 else f"{n:,.1f} {units[step]}"
