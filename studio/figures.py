"""The plotly figures the pages show: the Explore map, the Tune histogram and the audit sweep, as pure functions of a
pool, a curation and the audit's results. Document text is HTML-escaped for hover labels (studio.escape): plotly's
hover templates interpret tags.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from hnm_core.audit import AuditFigures, SweepResult
from hnm_core.curate.margins import margin_thresholds
from hnm_core.curate.reasons import reasons
from hnm_core.curate.rules import CurateParams, Curation
from hnm_core.curate.selection import GROUPS, ScoreGroups
from hnm_core.pool import Pool
from hnm_core.prove import ProofResult
from hnm_core.teacher import MEMBER_SCORE_COLUMN

from .escape import hover_text

__all__ = ["MarkerStyle", "STYLES", "HIGHLIGHT_NAME", "CLICK_TARGET_SIZE", "map_figure", "selected_docs", "score_histogram", "sweep_chart"]


class MarkerStyle(NamedTuple):
    """How one kind of point is drawn: legend name, colour and marker symbol (both differ between kinds, so the
    map reads in greyscale and for colour-blind people), size."""

    name: str
    color: str
    symbol: str
    size: int


# Okabe-Ito colours, each paired with its own marker shape. "selected" is a hard-band row sampled as a negative.
STYLES: dict[str, MarkerStyle] = {
    "query": MarkerStyle("query", "#000000", "star-diamond", 22),
    "positive": MarkerStyle("labelled positive", "#009E73", "star", 18),
    "unlabelled_positive": MarkerStyle("unlabelled positive (your verdict)", "#44AA99", "hexagram", 16),
    "bad_negative": MarkerStyle("bad negative (your verdict)", "#882255", "cross", 11),
    "selected": MarkerStyle("hard negative (selected)", "#D55E00", "diamond", 11),
    "hard": MarkerStyle("hard band, not selected", "#E69F00", "circle", 9),
    "false_negative": MarkerStyle("likely false negative", "#CC79A7", "x", 12),
    "near_duplicate": MarkerStyle("near-duplicate of a positive", "#8C564B", "square", 10),
    "same_cluster": MarkerStyle("same cluster as a positive", "#56B4E9", "triangle-up", 11),
    "skipped": MarkerStyle("skipped (source top-N)", "#B59B00", "triangle-down", 11),
    "unscored": MarkerStyle("unscored by the teacher", "#555555", "hourglass", 10),
    "easy": MarkerStyle("easy (below the floor)", "#0072B2", "circle-open", 9),
}


_CORPUS_COLOR = "rgba(140, 140, 140, 0.28)"

# Rows picked in the candidates table get a thick ring over their own marker.
HIGHLIGHT_NAME = "picked in the table"
_HIGHLIGHT = dict(color="#000000", size=26, symbol="circle-open", line=dict(width=3))  # open: drawn in `color`

# The markers of every click target: plotly's nearest-point distance counts at least 3 px of radius, so up to 6 px
# a target adds nothing to the true distance (see _click_target).
CLICK_TARGET_SIZE = 6

# Drawn last, on top of everything else, in this order: what the query is about must never hide under candidates.
_ON_TOP = ("unlabelled_positive", "positive")


# Above this many documents the faint corpus layer is drawn with WebGL and without hover text (1M hover strings
# would make the page megabytes heavier than the map itself).
_CORPUS_HOVER_LIMIT = 20_000


# The faint layer is context: above this many documents a fixed (seeded) sample of them is drawn, so a rerun of
# the Explore page never sends the browser millions of coordinates.
_CORPUS_DRAW_LIMIT = 50_000


def _point_kinds(curation: Curation, rows: tuple[int, int]) -> np.ndarray:
    start, end = rows
    labels = np.asarray(curation.labels[start:end], dtype=object)
    return np.where(curation.selected[start:end], "selected", labels)


def selected_docs(points: list[dict]) -> list[int]:
    """Positions of the documents among selected `points` (as st.plotly_chart reports them), in selection order,
    each once. Read from each point's customdata, not from its (curve, index): a selection made before a
    re-curation (a verdict moves its point to another trace) still names the same documents."""
    found: dict[int, None] = {}
    for point in points:
        data = point.get("customdata")
        last = data[-1] if isinstance(data, (list, tuple)) and data else data
        try:
            position = int(last)
        except (TypeError, ValueError):
            continue
        if position >= 0:
            found[position] = None
    return list(found)


# Kinds the zoom frames: the query's own neighbourhood, not the whole hard band (with a large K it spans the map).
_FOCUS = ("positive", "selected", "false_negative", "near_duplicate", "same_cluster", "skipped")


def map_figure(coords: np.ndarray, pool: Pool, curation: Curation, query_id: str, rows: tuple[int, int], *,
               zoom: bool = False, highlight: Sequence[int] = ()):
    """The Explore map: the corpus faint, then the query's pool rows by label, each kind with its own colour and
    marker (STYLES), the query's positives and then the query on top. `zoom` frames the query, its positives,
    sampled negatives and flagged candidates (double-click the map to see it all). `highlight`: collection
    positions to ring (rows picked in the candidates table), drawn under the positives and the query. Over all of
    them lie the click targets (_click_target, one trace per kind, out of the legend): they take the hovers and
    clicks, so a click picks the point nearest the pointer. Every point carries its collection position as the last
    item of its customdata (-1 for the query), for `selected_docs`."""
    import plotly.graph_objects as go

    coll = pool.collection
    n_docs = len(coll.doc_ids)
    start, end = rows
    doc_rows = pool.frame["doc_id"].iloc[start:end].map(coll.doc_index).to_numpy(np.int64)
    kinds = _point_kinds(curation, rows)
    scores = pool.frame["teacher_score"].iloc[start:end].to_numpy(np.float32, na_value=np.nan)
    score_texts = _score_texts(pool.frame.iloc[start:end], scores)
    why = reasons(pool.frame, curation, rows)

    fig = go.Figure()
    rest = np.setdiff1d(np.arange(n_docs), doc_rows)
    name = "rest of the corpus"
    if len(rest) > _CORPUS_DRAW_LIMIT:
        rest = np.sort(np.random.default_rng(0).choice(rest, size=_CORPUS_DRAW_LIMIT, replace=False))
        name += f" ({_CORPUS_DRAW_LIMIT:,} of {n_docs:,} drawn)"
    big = n_docs > _CORPUS_HOVER_LIMIT
    scatter = go.Scattergl if big else go.Scatter
    corpus = dict(x=coords[rest, 0], y=coords[rest, 1], mode="markers", name=name,
                  marker=dict(color=_CORPUS_COLOR, size=5))
    if big:
        corpus["hoverinfo"] = "skip"
    else:
        corpus["hovertext"] = [hover_text(coll.doc_texts[i], limit=300) for i in rest]
        corpus["hovertemplate"] = "%{hovertext}<extra>corpus</extra>"
    corpus["customdata"] = rest
    fig.add_trace(scatter(**corpus))

    def add_highlight() -> None:
        picked = np.asarray([p for p in dict.fromkeys(highlight) if 0 <= p < n_docs], dtype=np.int64)
        if not len(picked):
            return
        fig.add_trace(scatter(x=coords[picked, 0], y=coords[picked, 1], mode="markers", marker=_HIGHLIGHT,
                              name=f"{HIGHLIGHT_NAME} ({len(picked)})", customdata=picked, hoverinfo="skip"))

    targets = []  # the click targets, added over everything once every marker is drawn
    for kind in ("selected", "hard", "false_negative", "near_duplicate", "same_cluster", "skipped", "unscored",
                 "easy", "bad_negative", "highlight", *_ON_TOP):
        if kind == "highlight":
            add_highlight()
            continue
        mask = kinds == kind
        if not mask.any():
            continue
        style = STYLES[kind]
        rows_k = doc_rows[mask]
        name = f"{style.name} ({int(mask.sum())})"
        fig.add_trace(scatter(
            x=coords[rows_k, 0], y=coords[rows_k, 1], mode="markers", name=name, legendgroup=kind,
            marker=dict(color=style.color, symbol=style.symbol, size=style.size,
                        line=dict(width=1, color="white" if kind != "easy" else style.color)),
            customdata=rows_k, hoverinfo="skip",
        ))
        targets.append(scatter(
            x=coords[rows_k, 0], y=coords[rows_k, 1], **_click_target(style, kind, name),
            customdata=np.column_stack([[html.escape(coll.doc_ids[i], quote=False) for i in rows_k],
                                        score_texts[mask],
                                        [html.escape(r, quote=False) for r in why[mask]], [str(i) for i in rows_k]]),
            hovertext=[hover_text(coll.doc_texts[i]) for i in rows_k],
            hovertemplate=f"<b>%{{customdata[0]}}</b> · {html.escape(style.name)} · teacher %{{customdata[1]}}"
                          "<br><i>%{customdata[2]}</i><br>%{hovertext}<extra></extra>",
        ))

    q = coll.query_index[query_id]
    style = STYLES["query"]
    x, y = [coords[n_docs + q, 0]], [coords[n_docs + q, 1]]
    fig.add_trace(scatter(
        x=x, y=y, mode="markers", name="query", legendgroup="query", hoverinfo="skip", customdata=[-1],
        marker=dict(color=style.color, symbol=style.symbol, size=style.size, line=dict(width=1, color="white")),
    ))
    targets.append(scatter(x=x, y=y, **_click_target(style, "query", "query"), customdata=[-1],
                           hovertext=[hover_text(coll.query_texts[q])],
                           hovertemplate="<b>query</b><br>%{hovertext}<extra></extra>"))
    fig.add_traces(targets)
    fig.update_layout(
        # the top margin keeps plotly's toolbar clear of the legend
        # no dragmode: Streamlit's default (pan) lets a click select a point; in lasso mode a click selects nothing
        height=640, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
        legend=dict(orientation="v", x=1.01, y=1, xanchor="left", bgcolor="rgba(255,255,255,0.9)",
                    font=dict(size=12), itemsizing="constant"),
        hoverlabel=dict(align="left", font=dict(size=12)),
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    if zoom:
        near = np.r_[doc_rows[np.isin(kinds, _FOCUS)], n_docs + q]
        lo, hi = coords[near].min(axis=0), coords[near].max(axis=0)
        # at least a tenth of the whole map, plus a margin, so a tight clump is not blown up to noise
        span = np.maximum(hi - lo, 0.1 * np.ptp(coords, axis=0)) * 1.3
        centre = (lo + hi) / 2
        fig.update_xaxes(range=[centre[0] - span[0] / 2, centre[0] + span[0] / 2])
        fig.update_yaxes(range=[centre[1] - span[1] / 2, centre[1] + span[1] / 2])
    return fig


def _click_target(style: MarkerStyle, kind: str, name: str) -> dict:
    """The invisible twin of a kind's markers that takes its hovers and clicks. Plotly rates every marker under the
    pointer as equally near, less its radius (a big marker loses, and of equal ones the last drawn wins), so in a
    dense area a click took the topmost point, not the nearest; targets of one small size are rated by their true
    distance to the pointer. A clicked target shows in its kind's marker; the legend shows and hides it with its
    kind (legendgroup)."""
    return dict(mode="markers", name=name, legendgroup=kind, showlegend=False,
                marker=dict(color=style.color, symbol=style.symbol, size=CLICK_TARGET_SIZE, opacity=0),
                selected=dict(marker=dict(opacity=1, size=style.size)), unselected=dict(marker=dict(opacity=0)),
                hoverlabel=dict(bgcolor=style.color))


def _score_text(score: float) -> str:
    return "unscored" if np.isnan(score) else f"{score:.3f}"


def _score_texts(part: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """Each row's teacher score for the hover; under an ensemble teacher followed by each member's own score."""
    texts = np.array([_score_text(s) for s in scores], dtype=object)
    members = [(member, column) for member, column in MEMBER_SCORE_COLUMN.items() if column in part.columns]
    if members:
        own = [part[column].to_numpy(np.float32, na_value=np.nan) for _, column in members]
        texts = np.array([text if np.isnan(score) else text + " (" + " · ".join(
            f"{member} {values[i]:.3f}" for (member, _), values in zip(members, own)) + ")"
            for i, (text, score) in enumerate(zip(texts, scores))], dtype=object)
    return texts


def score_histogram(groups: ScoreGroups, frame: pd.DataFrame, params: CurateParams, query_id: str | None = None):
    """Teacher scores of the selected negatives, the hard band they are drawn from and the labelled positives
    (hnm_core.curate.selection's bins, each as a percentage of its own group, so 60 positives show next to 6,000
    candidates), with the ceiling, the floor and the margin threshold drawn as vertical lines: the mean over
    queries, and the chosen query's when one is given. Bars of binned counts, not raw scores: a 100k-row pool
    sends 120 numbers to the browser, not 100k."""
    import plotly.graph_objects as go

    fig = go.Figure()
    centres = (groups.edges[:-1] + groups.edges[1:]) / 2
    width = float(groups.edges[1] - groups.edges[0])
    colours = dict(zip(GROUPS, ("#D55E00", "#E69F00", "#009E73")))
    for name in GROUPS:
        size = groups.sizes[name]
        share = groups.counts[name] * (100.0 / size) if size else groups.counts[name] * 0.0
        mean = "" if np.isnan(groups.means[name]) else f", mean {groups.means[name]:.3f}"
        fig.add_trace(go.Bar(x=centres, y=share, width=width, name=f"{name} ({size:,}{mean})",
                             marker_color=colours[name], opacity=0.6,
                             hovertemplate="score %{x:.3f}: %{y:.1f}% of the group<extra></extra>"))
    lines: list[tuple[float, str, str, str]] = []
    if params.ceiling is not None:
        lines.append((params.ceiling, "ceiling", "#CC79A7", "solid"))
    if params.floor is not None:
        lines.append((params.floor, "floor", "#0072B2", "solid"))
    thresholds = margin_thresholds(frame, params)
    if thresholds.notna().any():
        lines.append((float(thresholds.mean()), "margin (mean over queries)", "#555555", "dash"))
        if query_id is not None and query_id in thresholds.index and not np.isnan(thresholds[query_id]):
            lines.append((float(thresholds[query_id]), f"margin for {query_id}", "#D55E00", "dot"))
    for i, (x, name, color, dash) in enumerate(lines):
        fig.add_vline(x=x, line=dict(color=color, dash=dash, width=2))
        fig.add_annotation(x=x, y=1.0 - 0.09 * i, yref="paper", text=f"{html.escape(name)} {x:.3f}", showarrow=False,
                           xanchor="left", xshift=4, font=dict(color=color, size=12), bgcolor="rgba(255,255,255,0.8)")
    fig.update_layout(
        barmode="overlay", height=360, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white",
        xaxis_title="teacher score", yaxis_title="% of group",
        legend=dict(orientation="h", x=0, y=-0.25),
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee")
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee")
    return fig


def sweep_chart(result: SweepResult, current: AuditFigures, recommended: AuditFigures):
    """The audit sweep: every grid point's leak (x) against the hardness of its negatives (y), coloured by coverage,
    the leak/hardness frontier as a line, the current slider position and the recommendation marked."""
    import plotly.graph_objects as go

    table = result.table
    axes = list(result.axes)
    hover = ["<br>".join(f"{html.escape(n)} = {'off' if pd.isna(row[n]) else row[n]}" for n in axes)
             for _, row in table.iterrows()]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=table["leak_rate"] * 100, y=table["mean_teacher"], mode="markers", name="swept settings",
        marker=dict(size=6, color=table["coverage"] * 100, colorscale="Viridis", showscale=True,
                    colorbar=dict(title="coverage %"), opacity=0.6),
        text=hover, hovertemplate="%{text}<br>leak %{x:.1f}%<br>teacher %{y:.3f}<extra></extra>"))
    frontier = result.frontier()
    fig.add_trace(go.Scatter(x=frontier["leak_rate"] * 100, y=frontier["mean_teacher"], mode="lines",
                             name="frontier", line=dict(color="#444", width=1)))
    for figures, name, symbol, color in ((current, "current sliders", "star", "#d62728"),
                                         (recommended, "recommended", "diamond", "#1f77b4")):
        fig.add_trace(go.Scatter(x=[figures.leak_rate * 100], y=[figures.mean_teacher], mode="markers", name=name,
                                 marker=dict(size=16, symbol=symbol, color=color, line=dict(width=1, color="white")),
                                 hovertemplate=f"{name}<br>leak %{{x:.1f}}%<br>teacher %{{y:.3f}}<extra></extra>"))
    fig.add_vline(x=result.target_leak * 100, line_dash="dash", line_color="#888",
                  annotation_text=f"target {result.target_leak:.0%}")
    fig.update_layout(xaxis_title="leak: exported negatives that are hidden positives (%)",
                      yaxis_title="hardness: mean teacher score of exported negatives", height=420,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def proof_chart(result: ProofResult):
    """nDCG@10 per arm as bars, with the spread over seeds as error bars when an arm ran with several."""
    import plotly.graph_objects as go

    summaries = result.summaries
    several = any(len(s.seeds) > 1 for s in summaries)
    figure = go.Figure(go.Bar(
        x=[s.arm for s in summaries], y=[s.mean["ndcg@10"] for s in summaries],
        error_y={"type": "data", "array": [s.std["ndcg@10"] for s in summaries], "visible": several},
        text=[f"{s.mean['ndcg@10']:.4f}" for s in summaries], textposition="outside",
        hovertext=[f"{s.arm}: {s.rows:,} rows, seeds {', '.join(map(str, s.seeds))}" for s in summaries],
        hoverinfo="text+y",
    ))
    figure.update_layout(yaxis_title=f"nDCG@10 on {result.splits.get('test', result.settings['test_split'])}",
                         xaxis_title="arm",
                         height=380, margin={"t": 30, "b": 40}, showlegend=False)
    return figure
