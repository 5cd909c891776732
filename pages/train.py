"""Train: the proof loop on the loaded collection (hnm_core.prove), and a cross-fitted teacher to mine with."""

import streamlit as st

from hnm_core.data import counted
from hnm_core.prove import HEADLINE, load_proof, prove
from hnm_core.settings import SETTINGS
from hnm_core.teacher_train import train_options, train_teacher
from studio import escape, figures, loaders
from studio.errors import shown_errors
from studio.progress import StreamlitProgress, run_buttons
from studio.state import MINE_PAGE, TUNE_PAGE, init_state, need_data, settings
from studio.widgets import replay_settings, reset_settings, setting_widget

init_state()
st.title("Train")
data = need_data()
splits = loaders.splits_at(str(data.path)) if data.path is not None else []
if len(splits) < 2:
    st.info("The proof loop trains on one qrels split of a BEIR folder and scores on another: load a folder with "
            "two splits (qrels_train.tsv and qrels.tsv, say), such as the bundled sample.")
    st.stop()

TRAIN_SETTINGS = [s.name for s in SETTINGS if s.stage in ("train", "eval", "prove")]
st.caption(f"Data: {escape.plain(data.collection.name)} · splits {', '.join(splits)}. Every arm fine-tunes the same "
           "model with the same recipe and seed and is scored on the test split: zero-shot, pairs only, naive "
           "(sentence-transformers' mine_hard_negatives) and hnm (the Mine and Tune pages' settings).")
st.page_link(TUNE_PAGE, label="The hnm arm curates with the Tune page's rules", icon=":material/tune:")

left, middle, right = st.columns(3)
with left:
    st.subheader("Proof")
    train_split = setting_widget("train_split", label="Train on split", options=splits)
    # splits that leave the train split queries of its own (the sample's `test` holds every query, `dev` none of
    # `train`'s); the queries a split shares with `train` are left out of training
    scored = loaders.scoring_splits(str(data.path), train_split)
    setting_widget("test_split", label="Score on split", options=scored or [s for s in splits if s != train_split])
    setting_widget("arms", label="Arms")
    setting_widget("seeds", label="Seeds")
    setting_widget("rounds", label="Mining rounds")
with middle:
    st.subheader("Recipe")
    for name in ("train_model", "loss", "epochs", "train_batch_size", "lr"):
        setting_widget(name)
with right:
    st.subheader("More")
    for name in ("warmup_ratio", "max_pairs", "train_precision", "eval_precision"):
        setting_widget(name)
    st.button("Reset training settings", key="reset_train", on_click=reset_settings, args=(TRAIN_SETTINGS,))

folder = loaders.proof_dir(data.key)
# Stop ends the proof at its next progress update; each finished arm is saved by then.
if run_buttons("Run proof", "run_proof", "stop_proof"):
    with shown_errors(), st.container(border=True):
        prove(data.path, folder, settings(), progress=StreamlitProgress(eta_stages=("prove",)))

result = load_proof(folder)
if result is not None:
    st.divider()
    if result.stopped:
        st.warning("Stopped before the end: the arms below finished; Run again to train only the rest.",
                   icon=":material/pause:")
    chart, recipe = st.columns([3, 2])
    chart.plotly_chart(figures.proof_chart(result), key="proof_chart")
    recipe.markdown("**Settings that produced it**")
    recipe.dataframe({"setting": list(result.settings), "value": [str(v) for v in result.settings.values()]},
                     hide_index=True, height=340)
    st.dataframe([{"arm": s.arm, "rows trained": s.rows, "seeds": len(s.seeds),
                   **{name: s.mean[name] for name in HEADLINE}, **{f"± {name}": s.std[name] for name in HEADLINE},
                   "minutes": s.minutes} for s in result.summaries], hide_index=True)
    st.caption(f"{counted(result.trained, 'arm run')} trained in the last run; the rest came from "
               f"{escape.plain(str(folder))}.")

with st.expander("Train a cross-fitted teacher on this split's labels (hnm train-teacher)"):
    st.caption("A cross-encoder, or the bi-encoder fine-tuned on the labels (teacher kind). Its negatives come from "
               "the Mine page's pool settings. When it is trained, Mine uses it as the teacher.")
    columns = st.columns(4)
    names = [s.name for s in SETTINGS if s.stage == "teacher_train"]
    for i, name in enumerate(names):
        with columns[i % 4]:
            setting_widget(name)
    if st.button("Train teacher", key="train_teacher"):
        values = settings()
        teacher_dir = loaders.session_dir() / "teacher"
        with shown_errors(), st.container(border=True):
            trained = train_teacher(data.collection, teacher_dir, **train_options(values), pool_settings=values,
                                    overwrite=True, progress=StreamlitProgress())
            replay_settings({"teacher": values["teacher_kind"], "teacher_model": str(trained.out_dir)})
            for sentence in trained.sentences():
                st.markdown(f"- {escape.plain(sentence)}")
            st.page_link(MINE_PAGE, label="Mine with it", icon=":material/construction:")
