"""The studio's side of a person's verdicts (hnm_core.curate.overrides): where this session's overrides file lives, reading
it (cached by the file's size and time, so every page re-curates with the verdicts as they are on disk) and adding
one.

The file is kept on disk, not in the session, so a verdict outlives a reload: beside the pool for a pool folder
read from disk (where `hnm curate POOL_DIR` applies it too), else in the cache folder under the collection's content
hash, shared by every pool mined from that collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import streamlit as st

from hnm_core.cache import default_cache_dir
from hnm_core.curate.overrides import Override, Overrides, Verdict, add_override, default_path, read_overrides
from hnm_core.data import Collection

if TYPE_CHECKING:
    from .state import LoadedData, Mined

__all__ = ["overrides_path", "current_overrides", "mark"]


def overrides_path(data: LoadedData, mined: Mined) -> Path:
    """The overrides file of this session's pool: POOL_DIR/overrides.jsonl for a saved pool, else
    CACHE/overrides/<collection hash>.jsonl."""
    if mined.key.startswith("saved:") and data.path is not None:
        return default_path(data.path)
    return default_cache_dir() / "overrides" / f"{data.key}.jsonl"


@st.cache_data(show_spinner=False, max_entries=16)
def _read(path: str, stamp: tuple[int, int], data_key: str, _collection: Collection) -> Overrides:
    """The file at `path` as it was at `stamp` (mtime_ns, size), checked against the collection `data_key`."""
    return read_overrides(path, _collection, missing_ok=True)


def current_overrides(data: LoadedData, mined: Mined) -> Overrides:
    """The verdicts in this session's overrides file now (none when it does not exist yet). Raises DataError for a
    damaged file (a hand edit), naming the line and the fix."""
    path = overrides_path(data, mined)
    try:
        info = path.stat()
    except FileNotFoundError:
        return Overrides(path=path)
    return _read(str(path), (info.st_mtime_ns, info.st_size), data.key, mined.pool.collection)


def mark(data: LoadedData, mined: Mined, query_id: str, doc_id: str, verdict: Verdict | Literal["cleared"],
         note: str) -> Override:
    """Add a verdict (or withdraw one: CLEARED) to this session's overrides file (the next curation applies it)."""
    return add_override(overrides_path(data, mined), query_id, doc_id, verdict, note)
