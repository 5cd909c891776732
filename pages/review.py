"""Review: the candidates a verdict teaches most about, one at a time and from the keyboard, with the query's positives
beside them; the verdicts go to the overrides file (every page curates with them) and estimate how many unlabelled
positives the export still holds (hnm_core.curate.review, hnm_core.curate.estimate, studio.review)."""

import streamlit as st

from hnm_core.wording import counted
from studio import escape, loaders, review, tables
from studio.corrections import current_overrides, mark
from studio.errors import shown_errors
from studio.state import TUNE_PAGE, curate_params, init_state, loaded, need_pool
from studio.widgets import setting_widget

# (verdict, button label, key), in the order the buttons stand; Streamlit shows each key on its button
VERDICT_KEYS = (("unlabelled_positive", "Unlabelled positive", "U"), ("bad_negative", "Bad negative", "B"),
                ("confirmed_negative", "Fine as a negative", "N"))
WORDS = {"unlabelled_positive": "unlabelled positives", "bad_negative": "bad negatives",
         "confirmed_negative": "fine as negatives", "skipped": "skipped"}
MARKED = {"unlabelled_positive": "an unlabelled positive", "bad_negative": "a bad negative",
          "confirmed_negative": "fine as a negative"}

init_state()
st.title("Review")
result = need_pool()
data = loaded()
pool = result.pool
frame = pool.frame
collection = pool.collection

with st.expander("Queue settings"):
    knobs = st.columns(4)
    wanted = review.QueueSettings(
        setting_widget("review_size", label="Draws", container=knobs[0]),
        setting_widget("review_seed", label="Seed", container=knobs[1]),
        setting_widget("review_floor", label="Drawn uniformly", kind="slider", container=knobs[2]),
        setting_widget("review_grid", label="Drawn over the audit's grid", kind="slider", container=knobs[3]),
    )
with shown_errors(stop=True):
    params = curate_params()
    held = review.pinned(result.key)
    if held is None:
        held = review.pin(result.key, params, wanted, frame)
    overrides = current_overrides(data, result)
if (held.params, held.review) != (params, wanted):
    st.info("This queue was drawn at other settings than Tune's and Queue settings hold now; its verdicts estimate "
            "the export at the settings it covers. A new queue starts its own count (your verdicts stay).")
    if st.button("Draw a new queue at the current settings", key="review_redraw"):
        with shown_errors(stop=True):
            review.pin(result.key, params, wanted, frame)
        st.rerun()

reviewed = review.with_verdicts(held, overrides)
counts = review.tally(reviewed, held)
queue = held.queue
done = queue.size - counts["open"]
st.caption(f"{escape.plain(queue.sentence())} Verdicts are kept with the pool and every page curates with them.")
st.progress(done / queue.size, text=f"{done:,} of {queue.size:,} draws judged or skipped")
for col, name in zip(st.columns(4), WORDS):
    col.metric(WORDS[name].capitalize(), f"{counts[name]:,}",
               help="Draws skipped in this session" if name == "skipped" else "Candidates (one drawn twice counts once)")


def judge(draw: int, query_id: str, doc_id: str, verdict: str) -> None:
    with shown_errors():
        mark(data, result, query_id, doc_id, verdict, review.note(held, draw))
        st.session_state["review_last"] = (held.queue_id, draw, query_id, doc_id)


def skip(draw: int) -> None:
    review.skipped_draws(held).add(draw)
    st.session_state["review_last"] = (held.queue_id, draw, None, None)


def undo() -> None:
    _, draw, query_id, doc_id = st.session_state.pop("review_last")
    if query_id is None:
        review.skipped_draws(held).discard(draw)
    else:
        with shown_errors():
            mark(data, result, query_id, doc_id, "cleared", review.note(held, draw) + " undone")


current = review.next_draw(reviewed, held)
can_undo = st.session_state.get("review_last", (None,))[0] == held.queue_id
if current is None:
    st.success("Every draw of the queue is judged or skipped. For more, set more draws or another seed in Queue "
               "settings and draw a new queue.")
    st.button("Undo", key="review_undo", shortcut="Backspace", on_click=undo, disabled=not can_undo)
else:
    draw, query_id, doc_id = int(current["draw"]), current["query_id"], current["doc_id"]
    st.subheader(f"Draw {draw:,} · query {escape.plain(query_id)}")
    st.markdown(f"**{escape.plain(collection.query_texts[collection.query_index[query_id]])}**")
    earlier = overrides.get(query_id, doc_id)
    st.caption(f"Why it is here: {escape.plain(current['why'])}. At the queue's settings it is "
               f"{escape.plain(current['label'])}{', exported' if current['exported'] else ', not exported'}." + (
                   f" You marked it {MARKED[earlier.verdict]} before (on Explore or another queue): judge it "
                   "again for this queue's estimate."
                   if earlier is not None else ""))
    candidate, positives = st.columns(2, gap="large")
    candidate.markdown(f"**Candidate {escape.plain(doc_id)}**")
    candidate.markdown(escape.plain(collection.doc_texts[collection.doc_index[doc_id]]))
    shown = tables.positives_of(pool, loaders.query_slices(result.key, pool)[query_id])
    positives.markdown(f"**The query's {counted(len(shown), 'labelled positive')}**")
    for doc, text in zip(shown["doc_id"].head(3), shown["text"].head(3)):
        positives.markdown(f"*{escape.plain(doc)}* · {escape.plain(text)}")
    if len(shown) > 3:
        with positives.expander(f"{len(shown) - 3:,} more"):
            st.dataframe(shown.iloc[3:], hide_index=True, key="review_more_positives")
    buttons = st.columns([1.5, 1.2, 1.4, 0.8, 1.1])  # wide enough for each label and its key
    for col, (verdict, label, key) in zip(buttons, VERDICT_KEYS):
        col.button(label, key=f"review_{verdict}", shortcut=key, on_click=judge,
                   args=(draw, query_id, doc_id, verdict), use_container_width=True,
                   type="primary" if verdict == "unlabelled_positive" else "secondary")
    buttons[3].button("Skip", key="review_skip", shortcut="S", on_click=skip, args=(draw,),
                      use_container_width=True)
    buttons[4].button("Undo", key="review_undo", shortcut="Backspace", on_click=undo,
                      disabled=not can_undo, use_container_width=True)

st.divider()
st.subheader("Unlabelled positives in the export")
verdicts = review.estimate_at(held, reviewed, params, frame)  # the draws above, read once
if verdicts is None:
    st.caption("Judge the draws above: from the first verdicts on, their share among the exported negatives is "
               "estimated here, with its 95% interval.")
elif verdicts.now is None:
    st.warning(escape.plain(verdicts.why))
else:
    now = verdicts.now
    share = min(now.share, 1.0)  # Hansen-Hurwitz is unbiased, not bounded: early verdicts can put it above 1
    cols = st.columns(3)
    cols[0].metric("Estimated share", f"{share:.1%}",
                   help="Of the negatives the current settings export (the rules alone, before your verdicts), the "
                        "share that are unlabelled positives: Hansen-Hurwitz over the judged draws, unbiased for the "
                        "queue's design")
    cols[1].metric("95% interval", f"{now.low:.1%} to {now.high:.1%}",
                   help="Korn-Graubard: Clopper-Pearson on the design's effective sample size")
    cols[2].metric("About", f"{share * now.exported:,.0f} of {now.exported:,}",
                   help="Estimated unlabelled positives among the exported negatives")
    st.caption(escape.plain(now.sentence()) + (
        f" {counted(counts['skipped'], 'draw')} skipped: the estimate leaves them out, which biases it if they "
        "were skipped for being hard to judge." if counts["skipped"] else ""))
st.page_link(TUNE_PAGE, label="The estimate beside the audit's leak, and the threshold to pick: Tune",
             icon=":material/tune:")
