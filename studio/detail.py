"""The Explore page's detail panel: one document of the chosen query's neighbourhood with its full text, every score
and rank, the reason for its label and the query's positives beside it, and the buttons that record a verdict on
it (studio.corrections), after which every page re-curates with the verdict."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from hnm_core.curate.overrides import CLEARED, Verdict
from hnm_core.curate.rules import Curation

from . import corrections, escape, tables
from .state import LoadedData, Mined

__all__ = ["latest_pick", "detail_panel"]

_VERDICT_BUTTONS: tuple[tuple[Verdict, str, str, str], ...] = (
    ("unlabelled_positive", "Unlabelled positive", ":material/check_circle:",
     "It answers the query: never export it as a negative (and export it as a positive when the extra_positives "
     "setting is on)."),
    ("bad_negative", "Bad negative", ":material/block:",
     "Not a useful negative (off-topic, broken text): never export it."),
)


def latest_pick(query_id: str, *, clicked: Sequence[int], picked: Sequence[int]) -> int | None:
    """The collection position of the document to detail: the one clicked on the map or picked in the candidates
    table most recently (Streamlit reports both selections on every run, so the one that changed since the last run
    wins). None when nothing is selected, and after a change of query until something new is selected; but the
    candidate given a verdict last stays (`explore_judged`: query, position, the sentence confirming it): the
    verdict redraws the map and the table, which drops their selections, and the person wants to see the verdict
    taken (and the Withdraw button) on the candidate they judged."""
    state = st.session_state
    seen = state.get("explore_seen")
    now = (query_id, tuple(clicked), tuple(picked))
    state["explore_seen"] = now
    focus = state.get("explore_focus")
    judged = state.get("explore_judged")
    if seen is None or seen[0] != query_id:  # selections made for another query do not carry over
        focus = None
    elif clicked and now[1] != seen[1]:
        focus = clicked[0]
    elif picked and now[2] != seen[2]:
        new = [p for p in picked if p not in seen[2]]
        focus = (new or list(picked))[-1]
    elif not clicked and not picked:
        focus = judged[1] if judged is not None and judged[0] == query_id else None
    if judged is not None and judged[:2] != (query_id, focus):  # another pick, or another query: the verdict is done
        del state["explore_judged"]
    state["explore_focus"] = focus
    return focus


def detail_panel(data: LoadedData, mined: Mined, curation: Curation, query_id: str, rows: tuple[int, int],
                 candidates: pd.DataFrame, position: int) -> None:
    """Draw the detail of the document at collection `position` for `query_id` (`rows`: its pool slice,
    `candidates`: its candidate_table)."""
    coll = mined.pool.collection
    doc_id = coll.doc_ids[position]
    st.subheader(f"Detail: {escape.plain(doc_id)}")
    judged = st.session_state.get("explore_judged")
    if judged is not None and judged[:2] == (query_id, position):  # shown until another candidate is picked
        st.success(escape.plain(judged[2]), icon=":material/check:")
    match = candidates.index[candidates["doc_id"] == doc_id]
    if not len(match):
        st.markdown("**corpus** · not in this query's pool")
        st.markdown(escape.plain(coll.doc_texts[position]))
        return
    row = candidates.loc[match[0]]
    st.markdown(f"**{escape.plain(row['label'])}** · {escape.plain(row['reason'])}")
    mine, positives = st.columns(2, border=True)
    with mine:
        st.markdown("**This document**")
        st.markdown(escape.plain(row["text"]))
        card = tables.score_card(row)
        # every row in view (35 px each, plus the header): a scrollbar would hide the last measures
        st.dataframe(card, hide_index=True, key="explore_detail_scores", height=35 * (len(card) + 1) + 3)
    with positives:
        shown = tables.positives_of(mined.pool, rows)
        st.markdown(f"**Labelled positives of {escape.plain(query_id)}** ({len(shown)})")
        for pos in shown.itertuples():
            score = "unscored" if pd.isna(pos.teacher_score) else f"teacher {pos.teacher_score:.3f}"
            st.markdown(f"`{escape.plain(pos.doc_id)}` · {score}  \n{escape.plain(pos.text)}")
    if row["label"] == "positive":
        st.caption("A labelled positive: there is no verdict to give on it.")
        return
    given = curation.overrides.get(query_id, doc_id)
    if given is not None:
        said, withdraw = st.columns([3, 1], vertical_alignment="center")
        said.caption(escape.plain(f"Your verdict: {given.verdict.replace('_', ' ')}"
                                  + (f" ({given.note})" if given.note else "") + f", {given.time}. A new one "
                                  "replaces it."))
        if withdraw.button("Withdraw", key="explore_withdraw", icon=":material/undo:", width="stretch",
                           help="Let the rules label this candidate again (the file keeps the history)"):
            corrections.mark(data, mined, query_id, doc_id, CLEARED, "")
            st.session_state["explore_judged"] = (query_id, position,
                                                  f"Withdrew your verdict on {doc_id} for {query_id}.")
            st.rerun()
    note = st.text_input("Note (optional, kept with the verdict)", key="explore_note")
    for column, (verdict, label, icon, help_text) in zip(st.columns(len(_VERDICT_BUTTONS)), _VERDICT_BUTTONS):
        if column.button(label, key=f"explore_mark:{verdict}", icon=icon, help=help_text, width="stretch"):
            corrections.mark(data, mined, query_id, doc_id, verdict, note)
            st.session_state["explore_judged"] = (
                query_id, position, f"Marked {doc_id} as {verdict.replace('_', ' ')} for {query_id}; kept in "
                                    f"{corrections.overrides_path(data, mined)}.")
            st.session_state.pop("explore_note", None)  # the next candidate starts with an empty note
            st.rerun()  # every table, the map and the counts re-curate with the verdict
    st.caption(f"Verdicts are kept in {escape.plain(str(corrections.overrides_path(data, mined)))} and applied by "
               "every page and by `hnm curate --overrides`.")
