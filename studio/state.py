"""Per-session state: what data is loaded, the mined pool, and the current value of every setting.

Everything lives in `st.session_state`, which Streamlit keeps per browser session, so two people using the studio at
once never see each other's data or settings. Every page calls `init_state()` first (it only fills keys that are
missing), so a page opened directly by its URL works before the Data page has run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st

from hnm_core.curate.rules import CurateParams, Curation, curate
from hnm_core.data import Collection
from hnm_core.pool import Pool
from hnm_core.settings import defaults

from .corrections import current_overrides
from .errors import shown_errors

__all__ = [
    "DATA_PAGE", "MINE_PAGE", "EXPLORE_PAGE", "TUNE_PAGE", "REVIEW_PAGE", "EXPORT_PAGE", "TRAIN_PAGE",
    "LoadedData", "Mined", "init_state", "settings", "set_data", "set_mined", "loaded", "mined",
    "need_data", "need_pool", "curate_params", "default_curate_params", "previous_curate_params",
]

DATA_PAGE = "pages/data.py"
MINE_PAGE = "pages/mine.py"
EXPLORE_PAGE = "pages/explore.py"
TUNE_PAGE = "pages/tune.py"
REVIEW_PAGE = "pages/review.py"
EXPORT_PAGE = "pages/export.py"
TRAIN_PAGE = "pages/train.py"


@dataclass(frozen=True)
class LoadedData:
    """A collection in this session. `key` hashes its content (the identity caches are keyed by); `origin` says
    what the person picked ("bundled sample", a path, uploaded file names); `path` is the file or folder it was read
    from, which an export may not overwrite; `split` the qrels split it was read with (None for a saved pool)."""

    collection: Collection
    key: str
    origin: str
    path: Path | None = None
    split: str | None = None


@dataclass(frozen=True)
class Mined:
    """A scored pool in this session. `key` identifies it (data + mining settings, or a saved pool folder) for the
    map and export caches; `settings` are the pool and teacher settings it was built with; `seconds` the wall time
    of the run that produced it (0 for a pool read from disk, or taken from the server's cache: `cached`)."""

    pool: Pool
    key: str
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False


# export: the last ExportResult; export_signature: the (pool, settings, formats) it was written with.
_EMPTY: dict[str, Any] = {"data": None, "mined": None, "query_id": None, "export": None, "export_signature": None}


def init_state() -> None:
    """Fill the session keys that are missing: no data, no pool, every setting at its default."""
    if "settings" not in st.session_state:
        st.session_state["settings"] = defaults()
    for key, value in _EMPTY.items():
        if key not in st.session_state:
            st.session_state[key] = value


def settings() -> dict[str, Any]:
    """The current value of every setting (hnm_core.settings names); widgets write into it."""
    return st.session_state["settings"]


def loaded() -> LoadedData | None:
    return st.session_state["data"]


def mined() -> Mined | None:
    return st.session_state["mined"]


def set_data(data: LoadedData) -> None:
    """Make `data` this session's collection; a pool, chosen query and export of earlier data are dropped."""
    for key, value in _EMPTY.items():
        st.session_state[key] = value
    st.session_state["data"] = data


def set_mined(result: Mined) -> None:
    st.session_state["mined"] = result
    st.session_state["export"] = st.session_state["export_signature"] = None
    query_id = st.session_state.get("query_id")
    if query_id not in result.pool.collection.query_index:
        st.session_state["query_id"] = None


def _stop_for(missing: str, page: str, label: str, icon: str) -> NoReturn:
    """Say what is missing, link to the page that makes it, and stop the page here."""
    st.info(missing)
    st.page_link(page, label=label, icon=icon)
    st.stop()


def need_data() -> LoadedData:
    """This session's data; without it, say what to do with a link to the Data page and stop the page here."""
    data = loaded()
    if data is None:
        _stop_for("No data loaded yet. Load the bundled sample or your own collection first.", DATA_PAGE,
                  "Go to Data", ":material/database:")
    return data


def need_pool() -> Mined:
    """This session's mined pool; without it, link to the page that comes first and stop the page here."""
    need_data()
    result = mined()
    if result is None:
        _stop_for("Nothing mined yet. Run the miner on the loaded data first.", MINE_PAGE, "Go to Mine",
                  ":material/construction:")
    return result


def curate_params() -> CurateParams:
    """The curation settings as they stand now (Tune writes them, Explore and Export read them).
    Raises SettingsError for a value out of range."""
    return CurateParams.from_settings(settings())


def default_curate_params() -> CurateParams:
    """The settings table's curation defaults (with this session's seed)."""
    return CurateParams.from_settings({**settings(), **defaults("curate")})


def previous_curate_params(pool_key: str, params: CurateParams) -> CurateParams | None:
    """The curation settings as they stood before the latest change on the pool `pool_key` (Tune's "before"), or
    None until they change. Call once per run with the settings drawn now."""
    last = st.session_state.get("tune_last")
    if last is not None and last[0] == pool_key and last[1] != params:
        st.session_state["tune_previous"] = last
    st.session_state["tune_last"] = (pool_key, params)
    previous = st.session_state.get("tune_previous")
    return previous[1] if previous is not None and previous[0] == pool_key else None


def current_curation(pool: Pool) -> tuple[CurateParams, Curation]:
    """The pool curated with the current settings (~10 ms) and the person's verdicts (studio.corrections). A setting
    out of range or a damaged overrides file is shown as the page's error and the page stops, as on every page that
    reads the curation."""
    with shown_errors(stop=True):
        params = curate_params()
        data, result = loaded(), mined()
        overrides = current_overrides(data, result) if data is not None and result is not None else None
        return params, curate(pool.frame, params, overrides)
    raise AssertionError("unreachable: shown_errors(stop=True) stops the page")  # says so to type checkers
