"""Tune: the false-negative rules and the sampling, with live counts and the teacher-score histogram.

Curation is a pure ~10 ms function of the pool and the settings, so it runs on every slider move; nothing is
re-encoded, re-scored or re-projected.
"""

import math
import time

import streamlit as st

from hnm_core.audit import audit_figures, audit_pool, hidden_share
from hnm_core.audit.verdicts import recommend_with_verdicts
from hnm_core.curate.rules import curate
from hnm_core.curate.selection import query_change, selection_change, selection_view
from hnm_core.settings import SETTINGS
from hnm_core.wording import counted
from studio import escape, figures, loaders, review, tables
from studio.corrections import current_overrides
from studio.errors import shown_errors
from studio.state import (
    EXPLORE_PAGE,
    EXPORT_PAGE,
    current_curation,
    default_curate_params,
    init_state,
    loaded,
    need_pool,
    previous_curate_params,
)
from studio.widgets import replay_settings, reset_settings, setting_widget

init_state()
st.title("Tune")
result = need_pool()
pool = result.pool
frame = pool.frame

scores = loaders.score_range(result.key, pool)
top_k = result.settings["top_k"]
teacher = (pool.meta.get("teacher") or {}).get("kind", "")
CURATE_SETTINGS = [s.name for s in SETTINGS if s.stage == "curate"]
MINING_SETTINGS = {s.name for s in SETTINGS if s.stage in ("run", "pool", "teacher")}

headline = st.container()  # the numbers, full width above both columns; filled once the curation has run
controls, outcome = st.columns([1, 2], gap="large")
with controls:
    st.subheader("False negatives")
    # Sliders span the scores this teacher gave (a cosine or a sigmoid).
    setting_widget("ceiling", label="Ceiling", kind="slider", lo=scores.lo, hi=scores.hi,
                   suggested=scores.ceiling_hint)
    setting_widget("relative_margin", label="Relative margin", kind="slider", suggested=0.05)
    setting_widget("absolute_margin", label="Absolute margin", kind="slider",
                   lo=0.0, hi=max(round(scores.hi - scores.lo, 2), 0.01), suggested=0.05)
    setting_widget("margin_ref", label="Margins compare with the positives'", kind="radio")
    auto_note = st.empty()  # which reference "auto" chose, once the curation has run
    setting_widget("near_dup", label="Near-duplicate guard", kind="slider")
    setting_widget("cluster_rule", label="Same-cluster rule", kind="toggle")
    setting_widget("skip_n", label="Skip top N", kind="slider", lo=0, hi=min(1000, max(top_k, 10)))
    st.subheader("Negatives")
    setting_widget("floor", label="Floor", kind="slider", lo=scores.lo, hi=scores.hi, suggested=scores.floor_hint)
    setting_widget("negatives", label="Negatives per query", kind="slider")
    setting_widget("sampling", label="Sampling", kind="radio")
    st.button("Reset to defaults", key="reset_tune", on_click=reset_settings, args=(CURATE_SETTINGS,))

with outcome:
    started = time.perf_counter()
    params, curation = current_curation(pool)  # with the verdicts the Explore page wrote, as Explore and Export
    if curation.auto_note is not None:
        auto_note.caption(escape.plain(curation.auto_note))
    view = selection_view(frame, curation)
    took = time.perf_counter() - started
    previous = previous_curate_params(result.key, params)
    versus = headline.radio("Before", ["the previous slider state", "the table's defaults"], key="tune_before",
                            horizontal=True, help="What the deltas and the per-query table compare the current "
                                                  "sliders with.")
    if versus == "the previous slider state" and previous is None:
        # a reload, or another page, starts the "previous" afresh: the sliders may well have moved before
        versus = "the table's defaults (no slider moved yet)" if params == default_curate_params() else \
            "the table's defaults (no slider moved on this visit yet)"
    before_params = previous if versus == "the previous slider state" else default_curate_params()
    if before_params == params:  # the defaults untouched: one curation serves both
        before, before_view = curation, view
    else:
        before = curate(frame, before_params, curation.overrides)
        before_view = selection_view(frame, before)
    metrics = headline.columns(5)
    metrics[0].metric("Negatives", f"{view.n_selected:,}", help="Sampled negatives, all queries: what is exported",
                      delta=view.n_selected - before_view.n_selected or None)
    hardness = view.mean_hardness - before_view.mean_hardness
    metrics[1].metric("Mean hardness", "-" if math.isnan(view.mean_hardness) else f"{view.mean_hardness:.3f}",
                      help="Mean teacher score of the sampled negatives",
                      delta=round(hardness, 3) if not math.isnan(hardness) and round(hardness, 3) else None)
    metrics[2].metric("False negatives", f"{view.n_false_negatives:,}",
                      help=f"Candidates dropped as likely false negatives: {view.drops_line()}")
    metrics[3].metric("Hard band", f"{curation.count('hard'):,}", help="Candidates negatives are sampled from")
    metrics[4].metric("Full quota", f"{curation.n_full_quota:,} / {curation.n_queries:,}",
                      help="Queries that got every negative asked for")
    change = selection_change(frame, before, curation)
    headline.caption(f"False negatives by rule: {view.drops_line()}. Against {versus}: {change.kept:,} negatives "
                     f"kept, {change.added:,} added, {change.dropped:,} dropped. Curated {len(frame):,} rows in "
                     f"{took * 1000:.0f} ms.")

    st.subheader("Teacher scores of what is exported")
    st.plotly_chart(figures.score_histogram(view.groups, frame, params, st.session_state["query_id"]),
                    key="tune_histogram", config={"displaylogo": False})
    kind = {"cross-encoder": "sigmoid of a cross-encoder logit", "ensemble": "mean per-query percentile of the "
            "ensemble's members"}.get(teacher, "cosine of a bi-encoder")
    note = (f"Teacher score = {kind}. Each group is shown as a percentage of itself: the selected negatives are "
            "drawn from the hard band and paired with the labelled positives.")
    if params.margins_on:
        chosen = st.session_state["query_id"]
        note += " The dashed margin line is the threshold averaged over queries" + (
            f"; the dotted one is {chosen}'s (chosen on Explore)." if chosen else
            "; choose a query on Explore to see its own.")
    st.caption(note)

    st.subheader("One query, before and after")
    collection = pool.collection
    if st.session_state.get("tune_query") not in collection.query_index:
        chosen = st.session_state["query_id"]
        st.session_state["tune_query"] = chosen if chosen in collection.query_index else collection.query_ids[0]
    query_id = st.selectbox("Query", collection.query_ids, key="tune_query",
                            format_func=lambda q: f"{q}: {collection.query_texts[collection.query_index[q]][:90]}")
    st.dataframe(tables.query_change_table(query_change(frame, before, curation, query_id), collection),
                 hide_index=True, key="tune_query_change",
                 column_config={"text": st.column_config.TextColumn(width="large")})
    st.caption(f"Its negatives under {versus} and now. Rank: place by teacher score among the query's selected "
               "negatives (0 = not selected); label now: why a dropped one went.")

    table, sentences = st.columns(2)
    table.dataframe(tables.label_counts(curation), hide_index=True, key="tune_counts")
    sentences.markdown("\n".join(f"- {line}" for line in curation.summary()))
    st.caption("Rules apply in the table's order; a row takes the first label whose rule matches.")

    short = tables.short_queries(curation, pool.collection)
    st.subheader(f"Queries short of their quota: {len(short):,}")
    if len(short):
        st.dataframe(short, hide_index=True, key="tune_short")
    else:
        st.caption(f"Every query got {counted(params.negatives, 'negative')}.")
    links = st.columns(2)
    links[0].page_link(EXPLORE_PAGE, label="See the labels on the map", icon=":material/scatter_plot:")
    links[1].page_link(EXPORT_PAGE, label="Export this curation", icon=":material/download:")

st.divider()
st.subheader("False-negative audit")
st.caption("Hide a share of each query's labelled positives (seeded), mine again as if they were unknown, and count "
           "how many come back as negatives (leak) at every point of a sweep over the ceiling, relative margin, "
           "skip-N and near-duplicate guard. The recommendation is the hardest setting whose leak stays under the "
           "target with at least the lowest coverage of queries at full quota.")
knobs = st.columns(3)
hide = setting_widget("hide", label="Share of positives hidden", kind="slider", lo=0.05, hi=0.95,
                      container=knobs[0])
target = setting_widget("target_leak", label="Leak target", kind="slider", lo=0.005, hi=0.1, container=knobs[1])
min_coverage = setting_widget("min_coverage", label="Lowest coverage", kind="slider", lo=0.5, hi=1.0,
                              container=knobs[2])
if st.button("Run the audit", key="run_audit"):
    with shown_errors():
        # the mining settings of this pool (checked when it was mined): the audit mines the hidden split the same way
        mining = {k: v for k, v in result.settings.items() if k in MINING_SETTINGS}
        bars = st.empty()  # the hidden split's mining progress, gone once it is done
        with bars.container():
            split_pool, split = loaders.audit_split_pool(result.key, loaders.settings_key(mining), hide,
                                                         pool.collection)
        bars.empty()
        with st.spinner("Sweeping the curation settings..."):
            st.session_state["audit_report"] = (result.key, audit_pool(split_pool, split, params))
with shown_errors(stop=True):
    verdicts = review.verdicts_of(result.key, params, frame, current_overrides(loaded(), result))
estimated = verdicts.now if verdicts is not None else None
report_entry = st.session_state.get("audit_report")
if report_entry is None or report_entry[0] != result.key:
    if verdicts is not None:
        said = estimated.sentence() if estimated is not None else verdicts.why
        st.markdown(escape.plain(f"Your verdicts on the Review page's queue: {said}"))
else:
    report = report_entry[1]
    sweep_result = report.sweep
    # with verdicts on a queue drawn at these settings over the audit's grid, the recommendation keeps both the
    # leak and the estimated share of unlabelled positives under the target
    grid = review.estimates_over_grid(verdicts, frame) if verdicts is not None and verdicts.held.params == params \
        else None
    recommendation = (recommend_with_verdicts(sweep_result, grid, target_leak=target, min_coverage=min_coverage)
                      if grid is not None else sweep_result.recommend(target_leak=target, min_coverage=min_coverage))
    # the current sliders, audited on the hidden-split pool (one curation, ~10 ms)
    audit_frame = report.pool.frame
    at_params = curate(audit_frame, params, auto_share=hidden_share(audit_frame, report.hidden))
    current = audit_figures(audit_frame, report.hidden, at_params, n_hidden=report.split.n_hidden)
    cols = st.columns(5)
    cols[0].metric("Leak now", f"{current.leak_rate:.1%}", help="Exported negatives that are hidden positives")
    cols[1].metric("Unlabelled positives", "-" if estimated is None else f"{min(estimated.share, 1.0):.1%}",
                   help="The share of exported negatives that your verdicts on the Review page's queue estimate are "
                        "unlabelled positives (its interval below)")
    cols[2].metric("Hidden caught", f"{current.hidden_caught:.0%}",
                   help="Hidden positives labelled false_negative / near_duplicate / same_cluster")
    cols[3].metric("Hardness", f"{current.mean_teacher:.3f}", help="Mean teacher score of exported negatives")
    cols[4].metric("Coverage", f"{current.coverage:.0%}", help="Queries with their full quota")
    if verdicts is not None:
        st.caption(escape.plain(estimated.sentence() if estimated is not None else verdicts.why))
    st.plotly_chart(figures.sweep_chart(sweep_result, current, recommendation.figures), key="audit_chart",
                    config={"displaylogo": False})
    labels = st.session_state.get("setting_labels", {})  # the sliders' own names, as drawn above
    shown = ", ".join(f"{labels.get(k, k)} {'off' if v is None else v}" for k, v in recommendation.settings.items())
    st.markdown(escape.plain(f"Recommended: {shown}. {recommendation.reason}"))
    st.button("Apply the recommendation", key="apply_audit", on_click=replay_settings,
              args=(recommendation.settings,))
