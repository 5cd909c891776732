"""The Review page's side of hnm_core.curate.review and .estimate: a queue drawn once and pinned for the session (Tune's
sliders may move on; the queue stays until the person draws another), the draws with the verdicts given on it, and
what they estimate at the current settings.

The queue is drawn from the rules alone, so a verdict changes what is exported but never which candidates the queue
holds. A verdict given on the queue is written to the overrides file with the note "review <queue id> draw <k>",
and only those count in its estimate: a verdict from Explore, or from another queue, chose its candidate by
another design, and counting it would bias the estimate (it still relabels the candidate everywhere). Skipping is
kept in the session, not the file: a skipped draw has no verdict, and the estimate leaves it out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

from hnm_core.audit.verdicts import grid_exports
from hnm_core.curate.estimate import ShareEstimate, estimate_share, estimate_table
from hnm_core.curate.overrides import Overrides
from hnm_core.curate.review import ReviewQueue, review_queue
from hnm_core.curate.rules import CurateParams, curate
from hnm_core.errors import DataError
from hnm_core.manifest import digest

__all__ = ["QueueSettings", "Pinned", "pinned", "pin", "note", "skipped_draws", "with_verdicts", "next_draw", "tally",
           "Verdicts", "verdicts_of", "estimate_at", "estimates_over_grid"]


class QueueSettings(NamedTuple):
    """The review settings the queue is drawn with (the `review` stage of hnm_core.settings)."""

    size: int
    seed: int
    floor: float
    grid: float


class Pinned(NamedTuple):
    """The session's queue: the pool and settings it was drawn at, its id (in its verdicts' notes), the queue."""

    pool_key: str
    params: CurateParams
    review: QueueSettings
    queue_id: str
    queue: ReviewQueue


@st.cache_data(show_spinner="Curating every setting of the audit's grid once...", max_entries=4)
def _exports(pool_key: str, params: CurateParams, _frame: pd.DataFrame) -> list[np.ndarray]:
    """What each setting of the audit's sweep grid around `params` exports from the pool `pool_key` (rules alone)."""
    return grid_exports(_frame, params)


@st.cache_data(show_spinner="Drawing the review queue...", max_entries=4)
def _queue(pool_key: str, params: CurateParams, review: QueueSettings, _frame: pd.DataFrame) -> ReviewQueue:
    exports = _exports(pool_key, params, _frame) if review.grid > 0 else []
    return review_queue(_frame, curate(_frame, params), exports=exports, size=review.size, seed=review.seed,
                        floor=review.floor, grid=review.grid)


def pinned(pool_key: str) -> Pinned | None:
    """The queue this session pinned for the pool `pool_key`, if any."""
    held = st.session_state.get("review_pinned")
    return held if held is not None and held.pool_key == pool_key else None


def pin(pool_key: str, params: CurateParams, review: QueueSettings, frame: pd.DataFrame) -> Pinned:
    """Draw the queue of the pool at `params` and `review` and pin it for this session."""
    queue_id = digest({"pool": pool_key, "params": repr(params), "review": list(review)}, size=6)
    held = Pinned(pool_key, params, review, queue_id, _queue(pool_key, params, review, frame))
    st.session_state["review_pinned"] = held
    return held


def note(held: Pinned, draw: int) -> str:
    """The note a verdict given on draw `draw` of the pinned queue carries."""
    return f"review {held.queue_id} draw {draw}"


def skipped_draws(held: Pinned) -> set[int]:
    """The draws of the pinned queue skipped in this session (kept per queue)."""
    return st.session_state.setdefault("review_skipped", {}).setdefault(held.queue_id, set())


def with_verdicts(held: Pinned, overrides: Overrides) -> pd.DataFrame:
    """The queue's draws with a `verdict` column: the verdict in force for the draw's (query, document) when it was
    given on this queue, else empty (and empty for a skipped draw). A candidate drawn twice gets its one verdict on
    both draws: each draw counts in the estimate."""
    table = held.queue.table.copy()
    mine = f"review {held.queue_id} "
    skipped = skipped_draws(held)
    verdicts = []
    for draw, query_id, doc_id in zip(table["draw"].tolist(), table["query_id"].tolist(), table["doc_id"].tolist()):
        hit = overrides.get(query_id, doc_id)
        verdicts.append(hit.verdict if hit is not None and hit.note.startswith(mine) and draw not in skipped else "")
    table["verdict"] = verdicts
    return table


def next_draw(reviewed: pd.DataFrame, held: Pinned) -> pd.Series | None:
    """The first draw, in queue order, with no verdict and not skipped; None when every draw is done."""
    skipped = skipped_draws(held)
    open_ = reviewed[(reviewed["verdict"] == "") & ~reviewed["draw"].isin(list(skipped))]
    return None if open_.empty else open_.iloc[0]


def tally(reviewed: pd.DataFrame, held: Pinned) -> dict[str, int]:
    """Candidates per verdict so far (a candidate drawn twice counts once), the draws skipped, and the draws still
    open (neither judged nor skipped)."""
    skipped = skipped_draws(held)
    first = reviewed[reviewed["repeat_of"] == 0]
    counts = first["verdict"].value_counts()
    out = {verdict: int(counts.get(verdict, 0)) for verdict in ("unlabelled_positive", "bad_negative",
                                                                 "confirmed_negative")}
    out["skipped"] = len(skipped)
    out["open"] = int(((reviewed["verdict"] == "") & ~reviewed["draw"].isin(list(skipped))).sum())
    return out


class Verdicts(NamedTuple):
    """What the pinned queue's verdicts say at the current settings: `now` the estimate (None where the current
    settings export candidates the queue could never draw, `why` says so)."""

    held: Pinned
    reviewed: pd.DataFrame
    now: ShareEstimate | None
    why: str


def verdicts_of(pool_key: str, params: CurateParams, frame: pd.DataFrame, overrides: Overrides) -> Verdicts | None:
    """The pinned queue's verdicts and their estimate at `params` (the rules alone); None without a pinned queue
    for this pool or a verdict given on it."""
    held = pinned(pool_key)
    return None if held is None else estimate_at(held, with_verdicts(held, overrides), params, frame)


def estimate_at(held: Pinned, reviewed: pd.DataFrame, params: CurateParams, frame: pd.DataFrame) -> Verdicts | None:
    """What the draws `reviewed` (with_verdicts of `held`) estimate at `params` (the rules alone); None before the
    first verdict."""
    if not (reviewed["verdict"] != "").any():
        return None
    try:
        now = estimate_share(reviewed, np.flatnonzero(curate(frame, params).selected),
                             population=held.queue.population, probability=held.queue.probability)
    except DataError as error:
        return Verdicts(held, reviewed, None, f"{error.reason} Draw a new queue on the Review page at these settings.")
    return Verdicts(held, reviewed, now, "")


def estimates_over_grid(verdicts: Verdicts, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The estimate at every setting of the audit's grid around the queue's settings (one row per sweep point), or
    None when the queue was drawn without the grid."""
    held = verdicts.held
    if held.review.grid <= 0:
        return None
    return estimate_table(verdicts.reviewed, _exports(held.pool_key, held.params, frame),
                          population=held.queue.population, probability=held.queue.probability)
