"""Data: pick the bundled sample, a path on the server, or upload files; see what was read."""

import time

import streamlit as st

from hnm_core.data import FILE_SUFFIXES
from hnm_core.settings import SETTINGS
from hnm_core.wording import counted
from studio import escape, folders, loaders, persist, tables
from studio.errors import shown_errors
from studio.state import (
    EXPLORE_PAGE,
    MINE_PAGE,
    LoadedData,
    Mined,
    init_state,
    loaded,
    mined,
    set_data,
    set_mined,
    settings,
)
from studio.widgets import reset_settings, setting_widget

TUNE_SETTINGS = [s.name for s in SETTINGS if s.stage == "curate"]


def use(data: LoadedData, result: Mined | None = None) -> None:
    """Make `data` (and a pool read with it) this session's. Tune settings chosen for one collection (an audit's
    recommendation, say) need not suit another, so another collection starts from the defaults; the same one again
    keeps them. Either way the page says which."""
    before = loaded()
    set_data(data)
    if result is not None:
        set_mined(result)
    if before is not None and before.key == data.key:
        st.session_state["data_note"] = "The same collection as before: the Tune settings are kept."
    elif before is not None:
        reset_settings(TUNE_SETTINGS)
        st.session_state["data_note"] = "Another collection: the Tune settings are back to their defaults."


SOURCES = {"sample": "Bundled sample", "path": "Folder or file path", "pool": "Folder or file path",
           "upload": "Upload files"}

init_state()
st.title("Data")
st.caption("Load a retrieval collection: passages, queries and their labelled positives.")
current = loaded()
if current is None and (work := persist.last_work()) is not None:
    with st.container(border=True):
        ago = time.time() - work.saved
        st.markdown(f"**Your last work** ({'under a minute' if ago < 60 else counted(int(ago // 60), 'minute')} "
                    f"ago): {escape.plain(work.what)}, with its settings.")
        if st.button("Resume it", type="primary", key="resume_work", icon=":material/history:"):
            st.session_state["data_note"] = persist.resume(work)
            st.rerun()
if current is not None and "data_source" not in st.session_state:
    # Streamlit forgets a widget's value on pages that do not draw it: show the source of what is loaded, not the
    # first choice (which offered the sample over a loaded collection)
    kind = loaders.data_kind(current)
    st.session_state["data_source"] = SOURCES[kind]
    if kind in ("path", "pool") and "data_path" not in st.session_state:
        st.session_state["data_path"] = str(current.path)


def replacing() -> None:
    """Under a Load button: what loading other data would replace (the caches keep the work for a later reload)."""
    if current is not None:
        pool = " and its mined pool (Run on Mine gets it back from the cache)" if mined() is not None else ""
        st.caption(f":material/swap_horiz: Loading replaces {escape.plain(current.collection.name)}{pool}.")


source = st.radio(
    "Source",
    ["Bundled sample", "Folder or file path", "Upload files"],
    key="data_source",
    horizontal=True,
    help="The sample is a small demo built to show lexical confusables and unlabelled positives "
         "(sample_data/README.md).",
)

with shown_errors():
    if source == "Bundled sample":
        st.markdown("253 passages about words with several senses (python, bank, cell, ...), 42 queries, "
                    "62 labelled positives, and 23 positives deliberately left unlabelled.")
        if current is not None and loaders.data_kind(current) == "sample":
            st.caption(":material/check: The sample is loaded (below).")
        else:
            replacing()
            if st.button("Load the sample", type="primary", key="load_sample"):
                use(loaders.load_sample())
    elif source == "Folder or file path":
        path = st.text_input(
            "Path on the machine running the app", key="data_path",
            placeholder="/data/scifact  or  /data/train.jsonl  or  a pool folder saved by `hnm pool`",
            help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels), a pairs file "
                 f"({', '.join(FILE_SUFFIXES)}) with query / positive columns, a FlagEmbedding JSONL file, a "
                 "Hugging Face dataset folder written by save_to_disk (a DatasetDict's split picked below), a hub "
                 "id org/name, or a pool folder written by `hnm pool` / `hnm mine` (opened without mining, like "
                 "`hnm curate`).",
        )
        splits = loaders.splits_at(path)
        if splits:
            setting_widget("split", label="split", options=splits)
        pool_folder = loaders.is_pool_folder(path)
        if loaders.is_loaded(current, path, None if pool_folder else settings()["split"]):
            st.caption(f":material/check: {escape.plain(current.collection.name)} is loaded from this path"
                       + (f", split {escape.plain(current.split)}" if splits and current.split else "")
                       + " (below).")
        elif pool_folder:
            st.info("This folder holds a saved pool: it opens as data and mined pool at once.")
            replacing()
            if st.button("Open the saved pool", type="primary", key="load_pool"):
                use(*loaders.load_saved_pool(path))
        else:
            replacing()
            if st.button("Load", type="primary", key="load_path", disabled=not path.strip()):
                use(loaders.load_path(path, settings()["split"]))
    else:
        cap = st.get_option("server.maxUploadSize")
        files = st.file_uploader(
            f"corpus.jsonl + queries.jsonl + qrels.tsv (BEIR), or one pairs / FlagEmbedding file; up to {cap} MB "
            "per file",
            type=[s.lstrip(".") for s in FILE_SUFFIXES], accept_multiple_files=True, key="data_upload",
        )
        st.caption(f"Files are read as data only (JSON, CSV, Parquet; never pickles), kept in a folder private to "
                   f"this browser session, and deleted when it ends. Larger than {cap} MB: use a path instead.")
        replacing()
        if st.button("Load the uploaded files", type="primary", key="load_upload", disabled=not files):
            use(loaders.load_uploads(files, folders.session_dir() / "upload", settings()["split"]))

data = loaded()
if data is None:
    st.stop()

collection = data.collection
if "data_note" in st.session_state:
    st.info(st.session_state.pop("data_note"), icon=":material/tune:")
st.divider()
st.subheader(f"Loaded: {escape.plain(collection.name)}")
st.caption(escape.plain(f"{data.origin} · {collection.source}"))
numbers = tables.collection_summary(collection)
columns = st.columns(5)
columns[0].metric("Documents", f"{numbers['documents']:,}")
columns[1].metric("Queries", f"{numbers['queries']:,}")
columns[2].metric("Labelled positives", f"{numbers['positives']:,}")
columns[3].metric("Positives per query", f"{numbers['mean positives per query']:.2f}")
columns[4].metric("Given negatives", f"{numbers['given negatives']:,}")

left, right = st.columns([1, 2])
with left:
    st.markdown("**Queries by number of positives**")
    st.dataframe(tables.positives_per_query(collection), hide_index=True, width="stretch")
with right:
    st.markdown("**Problems found while reading**")
    if collection.problems:
        for problem in collection.problems:
            st.warning(escape.plain(problem), icon=":material/warning:")
    else:
        st.success("None: every line was read.", icon=":material/check:")

with st.expander("Preview: the first queries and their labelled positives"):
    st.dataframe(tables.query_preview(collection), hide_index=True,
                 column_config={"positive": st.column_config.TextColumn(width="large")})

if st.session_state["mined"] is not None:
    st.page_link(EXPLORE_PAGE, label="Pool ready: explore it", icon=":material/scatter_plot:")
else:
    st.page_link(MINE_PAGE, label="Next: mine hard negatives", icon=":material/construction:")
