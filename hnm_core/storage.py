"""The disks hnm writes to, checked before any work.

`check_cache_dir` refuses a cache folder hnm cannot write (a file, a read-only folder) before the data is read, so
a run does not end on a traceback at its first cache write. `unwritable` tells which folder would stop a write.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SettingsError

__all__ = ["check_cache_dir", "unwritable"]


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
