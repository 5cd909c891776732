"""Explore: one query's neighbourhood on a 2-D map of the corpus, and the table of its candidates. Click a point (or
pick a table row) for its detail and your verdict on it; rows picked in the table are ringed on the map."""

import streamlit as st

from hnm_core.schema import RANK_MEANINGS, SCORE_COLUMNS
from hnm_core.wording import counted
from studio import escape, figures, loaders, tables
from studio.detail import detail_panel, latest_pick
from studio.search import search_queries
from studio.state import TUNE_PAGE, current_curation, init_state, loaded, need_pool

init_state()
st.title("Explore")
result = need_pool()
pool = result.pool
collection = pool.collection

params, curation = current_curation(pool)

slices = loaders.query_slices(result.key, pool)
search = st.text_input("Search queries (id or words)", key="query_search", placeholder="e.g. python, q07")
matches = [q for q in search_queries(collection.query_ids, collection.query_texts, search) if q in slices]
if not matches:
    st.warning(f"No query matches {escape.plain(repr(search))}.")
    st.stop()
if st.session_state.get("explore_query") not in matches:
    current = st.session_state["query_id"]
    st.session_state["explore_query"] = current if current in matches else matches[0]
query_id = st.selectbox(
    f"Query ({len(matches):,} of {len(slices):,})", matches, key="explore_query",
    format_func=lambda q: f"{q} · {collection.query_texts[collection.query_index[q]]}",
)
st.session_state["query_id"] = query_id
rows = slices[query_id]

table = tables.candidate_table(pool, curation, rows)
counts = table["label"].value_counts().reindex(table["label"].unique())  # in the table's order of groups
summary = " · ".join(f"{counts[label]} {label}" for label in counts.index)
st.markdown(f"**{escape.plain(collection.query_texts[collection.query_index[query_id]])}** — {summary}")
st.caption("Labels follow the settings on the Tune page.")
st.page_link(TUNE_PAGE, label="Change them on Tune", icon=":material/tune:")
# The map reads the table's picks, which are drawn below it: slots keep the page's order.
map_slot, detail_slot, lasso_slot = st.container(), st.container(), st.container()

st.subheader("Candidates of this query")
st.caption("Grouped by label (positives, then what is exported, the rest of the hard band, what the rules took "
           "out), each group by teacher score, highest first. Pick rows (the boxes at the left) to ring them on the "
           "map; pick one to see its detail above.")
offered = list(counts.index)
if "explore_labels" in st.session_state:  # a label that appears (a verdict, another query) is shown, not hidden
    before = st.session_state.get("explore_offered", [])
    st.session_state["explore_labels"] = [label for label in st.session_state["explore_labels"] if label in offered] \
        + [label for label in offered if label not in before]
st.session_state["explore_offered"] = offered
shown = st.multiselect("Show labels", offered, default=None if "explore_labels" in st.session_state else offered,
                       key="explore_labels")
listed = table[table["label"].isin(shown)]
picked = st.dataframe(
    listed,
    hide_index=True,
    height=420,
    # a selection is rows by position: when the rows move (a verdict or a slider moves a candidate to another label
    # group), it would name other documents, so a new order is a new table with nothing picked
    key=f"explore_table:{hash(tuple(listed['doc_id']))}",
    on_select="rerun",
    selection_mode="multi-row",
    column_config={
        "reason": st.column_config.TextColumn("reason", width=tables.text_width(listed["reason"]),
                                              help="The rule that gave the label, with its numbers"),
        "text": st.column_config.TextColumn("text", width="large"),
        "neg_rank": st.column_config.NumberColumn("neg rank", help="Rank among the sampled negatives (0 = not one)"),
        **{c: st.column_config.NumberColumn(c, format="%.3f") for c in SCORE_COLUMNS},
        **{c: st.column_config.NumberColumn(c, help=meaning) for c, meaning in RANK_MEANINGS.items()},
    },
)
table_docs = [collection.doc_index[d] for d in listed["doc_id"].iloc[
    [r for r in picked.selection.rows if r < len(listed)]]]

with map_slot, st.spinner("Laying out the map: a seeded UMAP, single-threaded. The first map in a server process "
                          "waits about 30 s for numba to compile; later ones take seconds, and this one is then "
                          "cached on disk."):
    coords = loaders.map_coords(result.key, result.settings["seed"], pool)
clicked, lassoed = [], []
if coords is None:
    map_slot.info("The map needs document embeddings, and this pool was mined with BM25 only. Add the dense "
                  "retriever on the Mine page to see it.")
else:
    with map_slot:
        zoom = st.toggle("Zoom to the query's neighbourhood", value=True, key="explore_zoom",
                         help="Frames the query, its positives, sampled negatives and flagged candidates. "
                              "Double-click the map to see all of it.")
        figure = figures.map_figure(coords, pool, curation, query_id, rows, zoom=zoom, highlight=table_docs)
        event = st.plotly_chart(figure, key="explore_map", on_select="rerun",
                                selection_mode=("points", "lasso", "box"),
                                config={"displaylogo": False, "scrollZoom": True})
        chosen = figures.selected_docs(event.selection.points)
        # a click selects one point and draws no area; a lasso or box lists what it holds
        if event.selection.lasso or event.selection.box:
            lassoed = chosen
        else:
            clicked = chosen
        st.caption(f"Seeded UMAP (seed {result.settings['seed']}, cosine) of every document and query embedding. "
                   "A seeded UMAP runs single-threaded so the layout is the same every time; it is computed once per "
                   "embedding set and cached on disk. Click a point for its detail; pick the lasso or box tool (top "
                   "right of the map) to list the documents in an area.")

focus = latest_pick(query_id, clicked=clicked, picked=table_docs)
if focus is not None:
    with detail_slot:
        detail_panel(loaded(), result, curation, query_id, rows, table, focus)

if lassoed:
    with lasso_slot:
        st.subheader(f"Selected on the map: {counted(len(lassoed), 'document')}")
        st.dataframe(tables.documents_table(collection, lassoed, table), hide_index=True,
                     column_config={"reason": st.column_config.TextColumn(width="medium"),
                                    "text": st.column_config.TextColumn(width="large"),
                                    **{c: st.column_config.NumberColumn(c, format="%.3f") for c in SCORE_COLUMNS}})
