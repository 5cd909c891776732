"""Keep a person's work across a browser reload: the loaded collection, the mined pool and every setting.

A reload starts a new Streamlit session with an empty `st.session_state`, but keeps the URL. So each session gets a
random token, kept in the URL as `?session=<token>`, and after every run `Saver.save()` writes what it would take
to get back to this point into `<hnm cache>/studio/sessions/<token>.json` (atomically, and only when it changed): how the
data was loaded (the sample, a path and its split, a saved pool folder), the key of the mined pool and its settings,
and the settings. A mined pool is saved once as a pool folder under `<hnm cache>/studio/pools/` (embeddings stay in
the embedding cache), so getting it back reads a few Parquet files and mines nothing. `start()` runs first in each
run and, in a session's first, restores the state of the token in its URL. Uploaded files live in a folder of the session that
ended, so they are not kept: the page says so. The plain address (no token: a new tab, a bookmark) starts a new
session; the Data page offers to resume the newest work of another session (`last_work`, `resume`), copied into
this session's own state file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from hnm_core.cache import default_cache_dir
from hnm_core.cli.studio import DATA_ENV, SPLIT_ENV
from hnm_core.engines.local import MiningParams
from hnm_core.errors import HnmError
from hnm_core.manifest import atomic_write_bytes, to_json
from hnm_core.pool import load_pool, save_pool
from hnm_core.settings import from_manifest

from . import loaders
from .state import LoadedData, Mined, loaded, mined, set_data, set_mined, settings

__all__ = ["PARAM", "state_path", "start", "Saver", "LastWork", "last_work", "resume"]

PARAM = "session"
_TOKEN = re.compile(r"[0-9a-f]{32}")
_FORMAT = 1
# Pools kept for reloads (the newest written); each is the size of the pool table plus the corpus text.
_KEEP_POOLS = 8
# Session state files kept (the newest written): each is a few kB, one per browser session ever opened.
KEEP_SESSIONS = 200


def _root() -> Path:
    return default_cache_dir() / "studio"


def state_path(token: str) -> Path:
    """The state file of the session whose URL holds `token`."""
    return _root() / "sessions" / f"{token}.json"


def prune_sessions(keep: int = KEEP_SESSIONS) -> int:
    """Delete all but the `keep` newest session state files (a reload of an older URL then starts afresh); returns
    how many went."""
    folder = _root() / "sessions"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    for old in files[:-keep] if keep else files:
        old.unlink(missing_ok=True)
    return max(0, len(files) - keep)


def _pool_folder(key: str) -> Path:
    return _root() / "pools" / key.split(":", 1)[-1]


def _data_record(data: LoadedData, split: str) -> dict[str, Any]:
    return {"kind": loaders.data_kind(data), "path": str(data.path), "key": data.key, "split": split}


def _keep_pool(result: Mined, data: LoadedData) -> str:
    """The folder a mined pool is reloaded from: a saved pool's own, or a copy saved once under the cache."""
    if result.key.startswith("saved:"):
        return str(data.path)
    folder = _pool_folder(result.key)
    if not (folder / "manifest.json").is_file():
        save_pool(result.pool, folder, overwrite=True)
        kept = sorted((p for p in folder.parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in kept[:-_KEEP_POOLS]:
            shutil.rmtree(old, ignore_errors=True)
    return str(folder)


@dataclass
class Saver:
    """What to write after a run, read from the session before the page runs (`before_run`) and again when it ends
    normally (`after_run`). `save` makes no Streamlit call: after st.stop() every one raises StopException, and
    most pages stop early (no data yet, no pool yet) in runs whose settings must be kept all the same. The settings
    dict is the session's own, which the widgets update in place, so it is current even then."""

    box: dict[str, Any]
    settings: dict[str, Any]
    data: LoadedData | None
    mined: Mined | None
    query_id: str | None

    @classmethod
    def before_run(cls) -> Saver:
        return cls(st.session_state["session_box"], settings(), loaded(), mined(), st.session_state["query_id"])

    def after_run(self) -> None:
        self.data, self.mined, self.query_id = loaded(), mined(), st.session_state["query_id"]

    def save(self) -> None:
        """Write the session's state file if it changed since the last write."""
        data, result = self.data, self.mined
        record: dict[str, Any] = {"format": _FORMAT, "settings": self.settings, "query_id": self.query_id,
                                  "data": None if data is None else _data_record(data, self.settings["split"]),
                                  "mined": None}
        if data is not None and result is not None and record["data"]["kind"] != "upload":
            try:
                folder = _keep_pool(result, data)
            except (OSError, HnmError):  # a full disk, say: the reload then says the pool is no longer kept
                folder = ""
            record["mined"] = {"key": result.key, "folder": folder, "settings": result.settings,
                               "seconds": result.seconds}
        raw = to_json(record)
        if raw != self.box.get("saved"):
            atomic_write_bytes(state_path(self.box["token"]), raw)
            self.box["saved"] = raw


def preload() -> str | None:
    """Load the collection `hnm studio DATA` named (hnm_core.cli.studio.DATA_ENV) into a new session, and show
    its path on the Data page; a sentence saying what was loaded or why not (None without one)."""
    path = os.environ.get(DATA_ENV, "")
    if not path:
        return None
    split = os.environ.get(SPLIT_ENV) or settings()["split"]
    settings()["split"] = split
    st.session_state["data_source"], st.session_state["data_path"] = "Folder or file path", path
    try:
        if loaders.is_pool_folder(path):
            data, result = loaders.load_saved_pool(path)
            set_data(data)
            set_mined(result)
        else:
            set_data(loaders.load_path(path, split))
    except (OSError, HnmError) as error:
        return f"Could not load {path}: {error}"
    return f"Loaded {loaded().collection.name} from {path}."


def start() -> str | None:
    """Before any page draws, in every run: take the URL's token, or make one, and keep it in the URL (page
    switches drop query parameters). In the first run of a session whose token has a state file, load that data,
    pool and settings into the session; in the first run of a new session, the collection of `hnm studio DATA`. Returns a sentence saying what came back or what could not (None when
    there was nothing to restore)."""
    box = st.session_state.get("session_box")
    first = box is None
    if first:
        given = st.query_params.get(PARAM, "")
        valid = bool(_TOKEN.fullmatch(given))
        box = st.session_state["session_box"] = {"token": given if valid else secrets.token_hex(16)}
    if st.query_params.get(PARAM) != box["token"]:
        st.query_params[PARAM] = box["token"]
    path = state_path(box["token"])
    if not first or not path.is_file():
        if first:  # a new session: a good moment to drop the state of sessions long gone
            prune_sessions()
            return preload()
        return None
    return _restore(path, "Restored")


def _restore(path: Path, verb: str) -> str:
    """Load the data, pool and settings of the state file at `path` into this session; the sentence saying what
    came back (starting with `verb`) or what could not."""
    try:
        raw = path.read_bytes()
        record = json.loads(raw)
        values = from_manifest(raw, source=str(path))
    except (OSError, ValueError, HnmError) as error:
        return f"Could not restore your last visit: {error}"
    settings().update(values)
    info = record.get("data")
    if not isinstance(info, dict):
        return f"{verb} your settings."
    if info.get("kind") == "upload":
        return f"{verb} your settings. Uploaded files are not kept across a reload: upload them again."
    split = info.get("split") or settings()["split"]
    try:
        if info.get("kind") == "pool":
            data, result = loaders.load_saved_pool(info["path"])
        else:
            sample = info.get("kind") == "sample"
            data = loaders.load_sample(split) if sample else loaders.load_path(info["path"], split)
            result = None
    except (OSError, KeyError, TypeError, HnmError) as error:
        return f"{verb} your settings, but not the data: {error}"
    set_data(data)
    if data.key != info.get("key"):
        return f"{verb} your settings; {data.collection.name} changed on disk since, so mine it again."
    kept = record.get("mined")
    if result is None and isinstance(kept, dict):
        try:
            mining = MiningParams.from_settings(kept["settings"]).settings()
            result = Mined(load_pool(kept["folder"]), kept["key"], mining, float(kept.get("seconds", 0.0)))
        except (OSError, KeyError, TypeError, ValueError, HnmError):
            return (f"{verb} {data.collection.name} and your settings; its pool is no longer kept: Run on the Mine "
                    "page (embeddings and scores come from the cache).")
    if result is not None:
        set_mined(result)
        query_id = record.get("query_id")
        if query_id in result.pool.collection.query_index:
            st.session_state["query_id"] = query_id
    return f"{verb} {data.collection.name}" + (", its mined pool" if result is not None else "") + \
        " and your settings."


@dataclass(frozen=True)
class LastWork:
    """The most recent work of another browser session (another tab, or before the URL lost its `?session=`):
    what it had loaded, in words, and when it was last saved."""

    token: str
    what: str
    saved: float


def last_work() -> LastWork | None:
    """The newest state file of another session that holds data this session could load again (not an upload), or
    None. A plain address (no `?session=`) starts a new session; this is what it offers to resume."""
    folder = _root() / "sessions"
    own = st.session_state["session_box"]["token"]
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    for path in files:
        if path.stem == own:
            continue
        try:
            record = json.loads(path.read_bytes())
            info, kept = record.get("data"), record.get("mined")
            kind, where = info["kind"], info["path"]
            saved = path.stat().st_mtime
        except (OSError, ValueError, TypeError, KeyError):
            continue  # damaged or gone since the listing: look at the next
        if kind == "upload":
            continue
        what = ("the bundled sample" if kind == "sample" else f"the saved pool {where}" if kind == "pool"
                else f"{where}" + (f" (split {info['split']})" if info.get("split") else ""))
        if isinstance(kept, dict) and kind != "pool":
            what += " with its mined pool"
        return LastWork(path.stem, what, saved)
    return None


def resume(work: LastWork) -> str:
    """Load the data, pool and settings of the session `work` into this one (which keeps its own URL and state
    file, so two tabs never write one file); the sentence saying what came back."""
    return _restore(state_path(work.token), "Resumed")
