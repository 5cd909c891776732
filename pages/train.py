"""Train: the proof loop on the loaded collection (hnm_core.prove), and a cross-fitted teacher to mine with."""

import streamlit as st

from hnm_core.prove import HEADLINE, load_proof, prove
from hnm_core.settings import SETTINGS
from hnm_core.teacher.training import train_options, train_teacher
from hnm_core.wording import counted
from studio import escape, figures, folders, loaders
from studio.corrections import current_overrides
from studio.errors import shown_errors
from studio.progress import StreamlitProgress, run_buttons
from studio.state import MINE_PAGE, TUNE_PAGE, init_state, mined, need_data, settings
from studio.widgets import replay_settings, reset_settings, setting_widget

init_state()
if "proof_variants" not in st.session_state:
    st.session_state["proof_variants"] = {}
st.title("Train")
data = need_data()
splits = loaders.splits_at(str(data.path)) if data.path is not None else []
if not splits:
    st.info("The proof loop trains on the labelled queries of a BEIR folder (one qrels split, or two) and scores on "
            "queries it never trained on: load such a folder, such as the bundled sample.")
    st.stop()

TRAIN_SETTINGS = [s.name for s in SETTINGS if s.stage in ("train", "eval", "prove")]
CURATE_SETTINGS = [s.name for s in SETTINGS if s.stage == "curate"]
about = st.empty()  # what the arms are scored on, said once the widgets below have picked it
st.page_link(TUNE_PAGE, label="The hnm arm curates with the Tune page's rules", icon=":material/tune:")

left, middle, right = st.columns(3)
with left:
    st.subheader("Proof")
    train_split = setting_widget("train_split", label="Train on split", options=splits)
    # splits that leave the train split queries of its own (the sample's `test` holds every query, `dev` none of
    # `train`'s); the queries a split shares with `train` are left out of training
    scored = loaders.scoring_splits(str(data.path), train_split)
    if not scored and not st.session_state.get("split_queries_offered"):
        # one labelled set (or no split of other queries): the test can only be a seeded share of its queries
        st.session_state["split_queries_offered"] = True
        settings()["split_queries"] = settings().get("split_queries") or 0.5
    # cross-fitted, every judged query of the split is scored once, by the arms trained on the other folds
    folds = setting_widget("cross_fit", label="Cross-fit folds", suggested=2)
    held_out = test_split = None
    if folds:
        settings()["split_queries"] = None
    else:
        held_out = setting_widget("split_queries", label="Hold out test queries", suggested=0.5)
    if not folds and held_out is None:
        test_split = setting_widget("test_split", label="Score on split",
                                    options=scored or [s for s in splits if s != train_split])
    # the variant is selected on queries neither trained nor scored on: another split, or held-out training queries
    selectable = loaders.selection_splits(str(data.path), train_split, test_split) if test_split else []
    # drawn disabled where no split qualifies (the sample's test split holds its dev queries), so it is never hidden
    if setting_widget("select_split", label="Select on a split", options=selectable or ["none without test queries"],
                      disabled=not selectable):
        settings()["select_queries"] = None
    else:
        setting_widget("select_queries", label="Select on training queries", suggested=0.2)
    setting_widget("rounds", label="Mining rounds")
with middle:
    st.subheader("Recipe")
    for name in ("train_model", "loss", "epochs", "train_batch_size", "lr"):
        setting_widget(name)
with right:
    st.subheader("More")
    for name in ("warmup_ratio", "max_pairs", "train_precision", "eval_precision", "checkpoint_minutes"):
        setting_widget(name)
    st.button("Reset training settings", key="reset_train", on_click=reset_settings, args=(TRAIN_SETTINGS,))

# full width: in a third of the page the fourth arm's pill was cut off
arms_box, seeds_box = st.columns([2, 1])
with arms_box:
    setting_widget("arms", label="Arms")
with seeds_box:
    setting_widget("seeds", label="Seeds")
if folds:
    scored_on = (f"each of {folds} seeded folds of the {train_split} split's judged queries in turn, by the arms "
                 "trained on the rest of them")
elif held_out:
    scored_on = f"a seeded {held_out:.0%} of the {train_split} split's queries, held out of training"
else:
    scored_on = (f"the queries of the {test_split} split (those it shares with {train_split} are left out of "
                 "training)")
about.caption(f"Data: {escape.plain(data.collection.name)} · splits {', '.join(splits)}. Every arm fine-tunes the "
              f"same model with the same recipe and seed and is scored on the same queries: {scored_on}. The arms: "
              "zero-shot, pairs only, naive (sentence-transformers' mine_hard_negatives), hnm (the Mine and Tune "
              "pages' settings) and each variant.")

st.subheader("Variants of the hnm arm")
variants = st.session_state["proof_variants"]
name_box, add_box = st.columns([2, 3], vertical_alignment="bottom")
name = name_box.text_input("Variant name", key="variant_name", placeholder="e.g. mean-margin")
if add_box.button("Add the Tune page's current curation as a variant", key="add_variant", disabled=not name):
    variants[name.strip()] = {key: settings()[key] for key in CURATE_SETTINGS}
for variant, changes in list(variants.items()):
    text, remove = st.columns([5, 1], vertical_alignment="center")
    differs = ", ".join(f"{k} {v}" for k, v in changes.items() if settings()[k] != v)
    text.markdown(f"**{escape.plain(variant)}**: " + (escape.plain(f"the current curation but {differs}") if differs
                                                      else "the current curation"))
    if remove.button("Remove", key=f"remove_variant:{variant}"):
        del variants[variant]
        st.rerun()
if not variants:
    st.caption("A variant is one more arm, hnm with another curation, curated from the hnm arm's pool: set the "
               "Tune page's rules, name them here, then change them for the next.")

folder = folders.proof_dir(data.key)
with shown_errors():
    st.caption(loaders.proof_estimate(str(data.path), settings(), len(variants)).sentence())
# Stop ends the proof at its next progress update; each finished arm and the training's last checkpoint are saved.
if run_buttons("Run proof", "run_proof", "stop_proof"):
    bars = st.empty()  # the proof's progress, gone once it is done (the tables below are what it made); an error keeps it
    with shown_errors():
        with bars.container(border=True):
            prove(data.path, folder, settings(), variants=variants, progress=StreamlitProgress(eta_stages=("prove",)))
        bars.empty()

result = load_proof(folder)
if result is not None:
    st.divider()
    if result.stopped:
        minutes = settings()["checkpoint_minutes"]
        kept = (f"a training that was under way resumes from its last checkpoint (one every {minutes:g} minutes)"
                if minutes else "a training that was under way starts over (Checkpoint minutes is 0)")
        st.warning(f"Stopped before the end: the arms below finished. Run again to train only the rest; {kept}.",
                   icon=":material/pause:")
    chart, recipe = st.columns([3, 2])
    chart.plotly_chart(figures.proof_chart(result), key="proof_chart")
    recipe.markdown("**Settings that produced it**")
    recipe.dataframe({"setting": list(result.settings), "value": [str(v) for v in result.settings.values()]},
                     hide_index=True, height=340)
    st.dataframe([{"arm": s.arm, "rows trained": s.rows, "seeds": len(s.seeds),
                   **{name: s.mean[name] for name in HEADLINE}, **{f"± {name}": s.std[name] for name in HEADLINE},
                   "minutes": s.minutes} for s in result.summaries], hide_index=True)
    for line in result.auto_lines():
        st.caption(escape.plain(line))
    comparisons = result.comparisons
    if comparisons:
        queries = counted(comparisons[0].queries, "test query", "test queries")
        st.markdown(f"**Paired nDCG@10 differences** over the {queries} and the seeds, in points, with 95% "
                    "bootstrap intervals: a win is an interval above zero; one that holds zero is noise.")
        st.dataframe([{"arm": c.arm, "against": c.against, "difference": round(100 * c.diff, 2),
                       "95% low": round(100 * c.low, 2), "95% high": round(100 * c.high, 2), "verdict": c.verdict,
                       "seeds": len(c.seeds)} for c in comparisons], hide_index=True, key="proof_comparisons")
    if result.selected is not None:
        st.success(f"Selected without the test queries: **{escape.plain(result.selected)}** (best nDCG@10 on "
                   f"{escape.plain(str(result.splits.get('select', 'the selection queries')))}).")
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
    pool = mined()
    with shown_errors():
        verdicts = current_overrides(data, pool) if pool is not None else None
    teach = bool(verdicts) and st.checkbox(
        f"Teach it your {counted(len(verdicts), 'verdict')} too", value=True, key="teacher_verdicts",
        help="Unlabelled positives taught as positives, bad and fine negatives as negatives; a query's verdicts "
             "train only the folds that never score it (Review and Explore write them)")
    if st.button("Train teacher", key="train_teacher"):
        values = settings()
        teacher_dir = folders.session_dir() / "teacher"
        with shown_errors(), st.container(border=True):
            trained = train_teacher(data.collection, teacher_dir, **train_options(values), pool_settings=values,
                                    overrides=verdicts.entries if teach else None, overwrite=True,
                                    progress=StreamlitProgress())
            replay_settings({"teacher": values["teacher_kind"], "teacher_model": str(trained.out_dir)})
            for sentence in trained.sentences():
                st.markdown(f"- {escape.plain(sentence)}")
            st.page_link(MINE_PAGE, label="Mine with it", icon=":material/construction:")
