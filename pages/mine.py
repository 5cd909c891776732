"""Mine: retrievers, bi-encoder, teacher and K; run pool -> teacher with live progress, then lay out the map."""

import time

import streamlit as st

from hnm_core.engines.local import MiningParams
from hnm_core.errors import HnmError
from hnm_core.settings import DEFAULT_MODEL, SETTINGS
from hnm_core.teacher import scoring_cost
from hnm_core.wording import counted, duration
from studio import escape, loaders
from studio.errors import shown_errors
from studio.progress import StreamlitProgress, run_buttons
from studio.state import EXPLORE_PAGE, TUNE_PAGE, Mined, init_state, mined, need_data, set_mined, settings
from studio.widgets import replay_settings, reset_settings, setting_widget, switch_teacher_kind

init_state()
st.title("Mine")
data = need_data()
collection = data.collection
st.caption(f"Data: {escape.plain(collection.name)} · {counted(len(collection.doc_ids), 'document')} · "
           f"{counted(len(collection.query_ids), 'query', 'queries')}")

MINE_SETTINGS = [s.name for s in SETTINGS if s.stage in ("run", "engine", "pool", "teacher")]
# Run, Stop and the progress of a run at the top, in view however far the settings below are scrolled; they are
# drawn there after the widgets below, so Run knows the teacher's problem and reads the values of this very click.
top = st.container()

left, right = st.columns(2)
with left:
    st.subheader("Candidates")
    setting_widget("sources", label="Retrievers")
    setting_widget("top_k", label="Candidates per retriever (K)")
    model = setting_widget("model", label="Bi-encoder (dense retrieval)")
    st.caption("Default: all-MiniLM-L6-v2, packaged (loads offline). Any sentence-transformers name in the Hugging "
               "Face cache, or a local folder, works too.")
    model_problem = loaders.model_problem(model) if "dense" in settings()["sources"] else None
    if model_problem:
        st.error(escape.plain(model_problem))
with right:
    st.subheader("Teacher")
    teacher = setting_widget("teacher", label="Teacher kind", kind="radio", on_change=switch_teacher_kind)
    members = setting_widget("teacher_members", label="Ensemble members", disabled=teacher != "ensemble")
    crossing = teacher == "cross-encoder" or (teacher == "ensemble" and "cross-encoder" in members)
    teacher_name = setting_widget(
        "teacher_model", label="Cross-encoder folder" if crossing else "Teacher model (bi-encoder)",
        placeholder="folder holding a trained cross-encoder" if crossing else DEFAULT_MODEL)
    top_n = setting_widget("teacher_top_n", label="Cross-encoder: candidates scored per query", disabled=not crossing)
    teacher_problem = None
    if crossing:
        cost = scoring_cost(len(collection.query_ids), sum(len(p) for p in collection.positives.values()), top_n)
        st.caption(f"A folder holding a trained cross-encoder: a sequence-classification model with one output "
                   f"(num_labels=1), such as an ms-marco reranker saved locally. A bi-encoder such as "
                   f"{DEFAULT_MODEL} is refused: its classification head would be random. It scores up to "
                   f"{cost.pairs:,} pairs here, about {duration(cost.seconds)} on two CPU cores; scores are "
                   "cached on disk.")
        if not teacher_name.strip():
            teacher_problem = "Type the folder of a trained cross-encoder, or pick the bi-encoder teacher."
            st.info(teacher_problem)
        elif teacher_problem := loaders.teacher_problem("cross-encoder", teacher_name):
            st.error(escape.plain(teacher_problem))
    if teacher == "ensemble":
        st.caption("An ensemble ranks each member's scores within the query and averages the percentiles (0 to 1); "
                   "each member's own score stays in the pool and the map's hover.")
    elif not crossing:
        st.caption("A bi-encoder teacher scores every row by cosine; the miner itself costs nothing extra. A teacher "
                   "folder trained on the Train page with teacher kind bi-encoder scores each query with the fold "
                   "model that never trained on it.")
        teacher_problem = loaders.teacher_problem("bi-encoder", teacher_name) or (
            loaders.model_problem(teacher_name) if teacher_name.strip() != model.strip() else None)
        if teacher_problem:
            st.error(escape.plain(teacher_problem))

with st.expander("Advanced: encoder, index, BM25, clustering, seed, engine"):
    columns = st.columns(3)
    for i, name in enumerate(("precision", "max_seq_length", "batch_size", "query_prompt", "doc_prompt", "index",
                              "exact_max_docs", "bm25_k1", "bm25_b", "stopwords", "n_clusters", "seed", "engine")):
        with columns[i % 3]:
            setting_widget(name)
    st.button("Reset mining settings", key="reset_mine", on_click=reset_settings, args=(MINE_SETTINGS,))


def _replay() -> None:
    upload = st.session_state.get("replay_manifest")
    if upload is None:
        return
    try:
        replay_settings(loaders.manifest_settings(upload.getvalue()))
    except HnmError as error:
        st.session_state["replay_error"] = str(error)


with st.expander("Replay the settings of an earlier run (a manifest.json, like `hnm mine --config`)"):
    st.file_uploader("manifest.json", type=["json"], key="replay_manifest")
    st.button("Apply its settings", key="replay_apply", on_click=_replay)
    if "replay_error" in st.session_state:
        st.error(escape.plain(st.session_state.pop("replay_error")))

wanted = {name: settings()[name] for name in MINE_SETTINGS}
with top:
    run = run_buttons("Run", "run_mine", "stop_mine", disabled=bool(teacher_problem or model_problem))
    progress_slot = st.container()
if run:
    with progress_slot, shown_errors():  # an error shows under Run, where the person looks
        params = MiningParams.from_settings(wanted)
        values = params.settings()
        started = time.perf_counter()
        # kept in the session: after a Stop, the next run of the page says where this one stopped
        progress = st.session_state["mine_progress"] = StreamlitProgress(eta_stages=None)
        bars = st.empty()
        try:
            with bars.container(border=True):
                pool = loaders.mined_pool(data.key, params, collection, progress)
        except HnmError:
            bars.empty()  # no empty box of bars above the message
            raise
        # a pool this server mined before with these settings comes from its cache without a progress report
        cached = not progress.last
        set_mined(Mined(pool, loaders.pool_key(data.key, values), values,
                        0.0 if cached else time.perf_counter() - started, cached=cached))
elif st.session_state.get("stop_mine"):
    stopped = st.session_state.get("mine_progress")
    where = stopped.unfinished() if stopped is not None else None
    if where is not None:
        stage, done, total = where
        progress_slot.warning(f"Stopped during {stage} at {done:,} / {total:,}. What was encoded and scored is "
                              "cached on disk: Run resumes from there.", icon=":material/pause:")

result = mined()
if result is None:
    st.stop()

pool = result.pool
st.divider()
st.subheader("Pool")
how = ("loaded from the cache (mined before with these settings)" if result.cached else
       f"mined in {result.seconds:.1f} s" if result.seconds else "read from a saved pool folder")
teacher_meta = pool.meta.get("teacher") or {}
st.markdown(f"{counted(len(pool.frame), 'row')}, {how}; teacher: {teacher_meta.get('kind', 'none')} "
            f"{escape.plain(str(teacher_meta.get('name', '-')))} ({teacher_meta.get('score', '')}).")
for sentence in pool.stats.sentences():
    st.markdown(f"- {sentence}")
changed = loaders.changed_settings(wanted, result.settings)
if changed:
    st.warning(f"Changed since this pool was mined: {', '.join(changed)}. Press Run to apply.",
               icon=":material/sync_problem:")
links = st.columns(2)
links[0].page_link(EXPLORE_PAGE, label="Explore the neighbourhoods", icon=":material/scatter_plot:")
links[1].page_link(TUNE_PAGE, label="Tune the false-negative rules", icon=":material/tune:")
