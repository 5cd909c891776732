"""The review queue: which candidates a person with an hour should judge first, drawn as a probability sample so
that their verdicts also measure the export (hnm_core.curate.estimate).

    queue = review_queue(frame, curate(frame, params), exports=[np.flatnonzero(curate(frame, p).selected) ...])
    queue.table    # one row per draw: query_id, doc_id, probability, why, repeat_of, ...

**Population.** The candidate rows the current curation exports (S0), joined by those any of `exports` holds (what
other settings export, those the estimate will be asked about: the audit's sweep grid, audit.verdicts.grid_exports).
Curations are taken as given, so pass curations without a person's verdicts to measure the rules alone.

**Priority** (what a verdict would teach), per row, the sum of six parts:

    near the line      1 / rank of |teacher score - the query's false-negative line| among the query's rows (the
                       line is the lower of the ceiling and the margin line: curate flags a score above it)
    ranked high        1 / the row's best rank in any source or by the teacher (skip-N's reason: the top of a
                       ranking holds most unlabelled positives)
    teacher vs dense   |log teacher rank - log dense rank| / log(deepest dense rank), capped at 1
    rules disagree     2 min(f, 1 - f), f = the share of the settings (the current and `exports`') exporting it
    members disagree   the spread of an ensemble's members' per-query percentiles (a pool an ensemble scored)
    like a positive    (g q)^16, g the row's percentile by teacher score among all the pool's candidates and q among
                       its query's: the candidates most likely to be unlabelled positives, which teach the teacher
                       most; scaled so that its total over the population equals the other five's (half the
                       priority chases them; on cranfield and nfcorpus it doubled the unlabelled positives 200
                       draws find, docs/review.md)

**Design.** `size` draws with replacement. A draw comes from the whole population with probability `grid` (when
`exports` are given), else from S0; within the part it comes from, it picks a row uniformly with probability
`floor`, else in proportion to its priority. So a row's probability per draw is known exactly,

    p_i = (1 - grid) [i in S0] d_S0(i) + grid d_U(i),   d_A(i) = floor / |A| + (1 - floor) priority_i / sum_A priority

and above 0 for every row of the population (the uniform floor). The draws are independent, so the first n of the
queue, or any part of it left unanswered independently of the candidates' truth, is itself an i.i.d. sample with
these probabilities: the Hansen-Hurwitz estimator over the answered draws is unbiased. The current export gets most
draws (it is what a person exports now: on cranfield 50 draws spread over the 1,500 grid settings' 14,000 exported
candidates gave its estimate two and a half times the standard error). A row drawn again is listed again with
`repeat_of` (its first draw): its verdict counts once per draw. Seeded by `seed` with numpy's PCG64, over rows in the
pool's order: the same pool, curations and seed give the same queue, and a longer queue starts with the shorter one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError, SettingsError
from ..schema import MEMBER_COLUMNS
from ..settings import setting
from .margins import margin_thresholds
from .rules import Curation

__all__ = ["ReviewQueue", "review_queue", "queue_population", "false_negative_line", "PARTS"]

PARTS: dict[str, str] = {
    "near_line": "near the false-negative line",
    "top_rank": "ranked high",
    "rank_gap": "teacher and dense ranks disagree",
    "rules_disagree": "settings disagree",
    "members_disagree": "ensemble members disagree",
    "like_positive": "scores like a positive",
    "floor": "uniform check",
}
"""Why a draw is in the queue: the part of the priority that weighs most for it, or the uniform floor that drew it."""


@dataclass(frozen=True, eq=False)
class ReviewQueue:
    """The queue: `table` has one row per draw, in draw order (`draw` from 1): `row` (its position in the frame),
    query_id, doc_id, `probability` (of drawing that row in one draw), `why` (a short reason) and `part` (its key in
    PARTS), `repeat_of` (the draw that first drew the row, 0 for a first draw), and at the current settings the
    `teacher_score`, the query's false-negative `line`, the row's `label` and whether it is `exported`.

    `population` holds the frame positions the queue draws from, `probability` each one's chance per draw (aligned
    with it); `size`, `seed`, `floor` and `grid` are the design's settings and `n_settings` the settings it
    covers."""

    table: pd.DataFrame
    population: np.ndarray
    probability: np.ndarray
    size: int
    seed: int
    floor: float
    grid: float
    n_settings: int

    def sentence(self) -> str:
        first = int((self.table["repeat_of"] == 0).sum())
        return (f"{self.size:,} draws ({first:,} distinct candidates) from the {len(self.population):,} candidates "
                f"exported at {self.n_settings:,} setting{'s' * (self.n_settings != 1)}, "
                f"{1 - self.grid:.0%} of them from the current export; a uniform floor of {self.floor:.0%} gives "
                "every candidate a chance, so verdicts on the first n estimate the share of unlabelled positives "
                "without bias.")


def queue_population(n_rows: int, exports: Sequence[np.ndarray]) -> np.ndarray:
    """Frame positions (of a frame of `n_rows` rows) that any of `exports` holds, ascending."""
    if not exports:
        raise SettingsError("a review queue needs at least one setting's exports (the current settings')")
    exported = np.zeros(n_rows, dtype=bool)
    for positions in exports:
        if len(positions) and (positions.min() < 0 or positions.max() >= n_rows):
            raise DataError("review queue", f"an export names a row beyond the frame's {n_rows:,}.",
                            fix="curate the pool frame the queue is drawn from at every setting")
        exported[positions] = True
    return np.flatnonzero(exported)


def false_negative_line(frame: pd.DataFrame, curation: Curation) -> np.ndarray:
    """Per row, the teacher score above which `curation`'s settings flag a candidate as a false negative: the lower
    of the ceiling and the query's margin line; NaN where neither is on (or the query has no scored positive)."""
    margin = margin_thresholds(frame, curation.params, auto_share=curation.auto_share)
    line = frame["query_id"].map(margin).to_numpy(dtype=np.float64, na_value=np.nan)
    if curation.params.ceiling is not None:
        line = np.fmin(line, curation.params.ceiling)
    return line


def review_queue(frame: pd.DataFrame, curation: Curation, *, exports: Sequence[np.ndarray] = (),
                 size: int = setting("review_size").default, seed: int = setting("review_seed").default,
                 floor: float = setting("review_floor").default,
                 grid: float = setting("review_grid").default) -> ReviewQueue:
    """Draw the review queue of `frame` (see the module docstring for the population, priority and design).

    curation: the current settings' curation of `frame`; exports: the frame positions other settings export
        (np.flatnonzero(curation.selected) of each), those the estimate should cover (the audit's sweep grid).
    size: draws in the queue; seed: its seed; floor: the share of draws made uniformly; grid: the share of draws
        made over the whole population rather than the current export (ignored without `exports`).
    """
    size, seed, floor, grid = (setting(n).check(v) for n, v in (
        ("review_size", size), ("review_seed", seed), ("review_floor", floor), ("review_grid", grid)))
    current = np.flatnonzero(curation.selected)
    if not len(current):
        raise DataError("review queue", "no candidate is exported at these settings, so there is nothing to "
                                        "review.", fix="loosen the false-negative rules or mine a deeper pool")
    exports = [current, *exports]
    grid = grid if len(exports) > 1 else 0.0
    population = queue_population(len(frame), exports)
    parts = _priority_parts(frame, curation, exports, population)
    priority = parts.sum(axis=1)
    in_current = np.isin(population, current)
    by_current = _design(priority, in_current, floor)
    by_all = _design(priority, np.ones(len(population), dtype=bool), floor)
    probability = (1.0 - grid) * by_current.probability + grid * by_all.probability

    # Three uniforms per draw, generated draw by draw: the first n draws are the same whatever `size` is.
    u = np.random.default_rng(seed).random((size, 3))
    from_all, uniform, picks = u[:, 0] < grid, u[:, 1] < floor, u[:, 2]
    drawn = np.where(from_all, by_all.draw(uniform, picks), by_current.draw(uniform, picks))
    uniform |= np.where(from_all, by_all.flat, by_current.flat)

    rows = population[drawn]
    repeat_of = np.zeros(size, dtype=np.int64)
    first: dict[int, int] = {}
    for k, r in enumerate(rows.tolist()):
        if r in first:
            repeat_of[k] = first[r]
        else:
            first[r] = k + 1
    part = np.where(uniform | (parts[drawn].max(axis=1) <= 0), "floor",
                    np.array(list(PARTS)[:-1], dtype=object)[np.argmax(parts[drawn], axis=1)])
    line = false_negative_line(frame, curation)
    score = frame["teacher_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    table = pd.DataFrame({
        "draw": np.arange(1, size + 1),
        "row": rows,
        "query_id": frame["query_id"].to_numpy(dtype=object)[rows],
        "doc_id": frame["doc_id"].to_numpy(dtype=object)[rows],
        "probability": probability[drawn],
        "part": part,
        "why": _reasons(frame, exports, rows, part, score, line),
        "repeat_of": repeat_of,
        "teacher_score": score[rows],
        "line": line[rows],
        "label": np.asarray(curation.labels, dtype=object)[rows],
        "exported": curation.selected[rows],
    })
    return ReviewQueue(table=table, population=population, probability=probability, size=size, seed=seed,
                       floor=floor, grid=grid, n_settings=len(exports))


@dataclass(frozen=True)
class _Design:
    """Draws over the population rows `members` marks: uniform with probability `floor`, else by priority. `flat`:
    every member has priority 0, so every draw is uniform."""

    probability: np.ndarray  # per population row, 0 outside `members`
    members: np.ndarray
    weights: np.ndarray
    flat: bool

    def draw(self, uniform: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """Population positions for uniforms `picks`, the uniform design where `uniform` (or flat), else by priority."""
        positions = np.flatnonzero(self.members)
        flat = np.minimum((picks * len(positions)).astype(np.int64), len(positions) - 1)
        weighted = np.minimum(np.searchsorted(np.cumsum(self.weights), picks, side="right"), len(positions) - 1)
        return positions[np.where(uniform | self.flat, flat, weighted)]


def _design(priority: np.ndarray, members: np.ndarray, floor: float) -> _Design:
    weights = priority[members]
    total = weights.sum()
    n = int(members.sum())
    flat = not total > 0
    share = 1.0 if flat else floor
    inside = share / n + (1.0 - share) * (weights / total if not flat else 0.0)
    probability = np.zeros(len(priority))
    probability[members] = inside
    return _Design(probability, members, weights / total if not flat else np.full(n, 1.0 / n), flat)


def _priority_parts(frame: pd.DataFrame, curation: Curation, exports: Sequence[np.ndarray],
                    population: np.ndarray) -> np.ndarray:
    """(population rows, 6): the parts of PARTS but the floor, in its order (the module docstring)."""
    sub = frame.iloc[population]
    query = sub["query_id"].to_numpy(dtype=object)
    score = sub["teacher_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.zeros((len(population), 6))

    gap = np.abs(score - false_negative_line(frame, curation)[population])
    if not np.isnan(gap).all():
        rank = pd.Series(gap).groupby(query).rank(method="min").to_numpy()
        out[:, 0] = np.nan_to_num(1.0 / rank, nan=0.0)

    teacher_rank = _teacher_ranks(frame)[population]
    out[:, 1] = 1.0 / _best_ranks(frame)[population]

    dense_rank = sub["dense_rank"].to_numpy(dtype=np.float64)
    deepest = max(float(frame["dense_rank"].max()), 2.0)
    ranked = (teacher_rank > 0) & (dense_rank > 0)
    out[ranked, 2] = np.minimum(np.abs(np.log(teacher_rank[ranked]) - np.log(dense_rank[ranked])) / np.log(deepest),
                                1.0)

    if len(exports) > 1:
        share = _export_counts(len(frame), exports)[population] / len(exports)
        out[:, 3] = 2.0 * np.minimum(share, 1.0 - share)

    members = _member_percentiles(frame)
    if members is not None:
        spread = np.nanmax(members, axis=1) - np.nanmin(members, axis=1)
        out[:, 4] = np.nan_to_num(spread[population], nan=0.0)

    global_pct, query_pct = _score_percentiles(frame)
    like = (global_pct * query_pct)[population] ** LIKE_POWER
    others = out[:, :5].sum()
    if like.sum() > 0:
        out[:, 5] = like * (others / like.sum() if others > 0 else 1.0)
    return out


LIKE_POWER = 16
"""The sharpness of the "like a positive" part: 8 found fewer unlabelled positives on cranfield and nfcorpus, 32 no
more (docs/review.md)."""


def _score_percentiles(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its teacher score's percentile among every scored candidate of the pool and among its query's (in
    (0, 1], ties take the higher); 0 for a positive or an unscored row."""
    score = frame["teacher_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = ~frame["is_positive"].to_numpy(dtype=bool) & ~np.isnan(score)
    global_pct, query_pct = np.zeros(len(frame)), np.zeros(len(frame))
    if usable.any():
        ordered = np.sort(score[usable])
        global_pct[usable] = np.searchsorted(ordered, score[usable], side="right") / len(ordered)
        query_pct[usable] = (pd.Series(score[usable]).groupby(frame["query_id"].to_numpy(dtype=object)[usable])
                             .rank(method="max", pct=True).to_numpy())
    return global_pct, query_pct


def _best_ranks(frame: pd.DataFrame) -> np.ndarray:
    """Per row, its best (lowest) rank by BM25, dense or the teacher; infinity where none ranks it."""
    ranks = np.stack([frame["bm25_rank"].to_numpy(dtype=np.float64), frame["dense_rank"].to_numpy(dtype=np.float64),
                      _teacher_ranks(frame)], axis=1)
    ranks[ranks <= 0] = np.inf
    return ranks.min(axis=1)


def _export_counts(n_rows: int, exports: Sequence[np.ndarray]) -> np.ndarray:
    """Per frame row, how many of `exports` hold it."""
    counts = np.zeros(n_rows, dtype=np.int64)
    for positions in exports:
        counts[positions] += 1
    return counts


def _teacher_ranks(frame: pd.DataFrame) -> np.ndarray:
    """Per row, its rank by teacher score (1 = highest) among its query's scored candidates; 0 for a positive or an
    unscored row."""
    score = frame["teacher_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = ~frame["is_positive"].to_numpy(dtype=bool) & ~np.isnan(score)
    ranks = np.zeros(len(frame))
    ranks[usable] = (pd.Series(score[usable]).groupby(frame["query_id"].to_numpy(dtype=object)[usable])
                     .rank(method="min", ascending=False).to_numpy())
    return ranks


def _member_percentiles(frame: pd.DataFrame) -> np.ndarray | None:
    """(rows, members) per-query percentile of each ensemble member's score, or None for a pool with fewer than two
    members."""
    names = [name for name in MEMBER_COLUMNS if name in frame and frame[name].notna().any()]
    if len(names) < 2:
        return None
    query = frame["query_id"].to_numpy(dtype=object)
    return np.stack([frame[name].astype("float64").groupby(query).rank(pct=True).to_numpy() for name in names],
                    axis=1)


def _reasons(frame: pd.DataFrame, exports: Sequence[np.ndarray], rows: np.ndarray, part: np.ndarray,
             score: np.ndarray, line: np.ndarray) -> list[str]:
    """The short reason of each draw, with its numbers."""
    counts = _export_counts(len(frame), exports)
    teacher_rank = _teacher_ranks(frame)
    dense = frame["dense_rank"].to_numpy(dtype=np.int64)
    members = _member_percentiles(frame)
    global_pct, query_pct = _score_percentiles(frame)
    names = [name.removeprefix("teacher_").replace("_", "-") for name in MEMBER_COLUMNS
             if name in frame and frame[name].notna().any()]
    out = []
    for row, kind in zip(rows.tolist(), part.tolist()):
        if kind == "near_line":
            side = "below" if score[row] <= line[row] else "above"
            out.append(f"teacher {score[row]:.3f}, {abs(score[row] - line[row]):.3f} {side} the false-negative "
                       f"line {line[row]:.3f}")
        elif kind == "top_rank":
            named = [(int(r), n) for r, n in zip((frame["bm25_rank"].iat[row], frame["dense_rank"].iat[row],
                                                  teacher_rank[row]), ("BM25", "dense", "teacher")) if r > 0]
            best = min(r for r, _ in named)
            out.append(f"rank {best} by {' and '.join(n for r, n in named if r == best)}")
        elif kind == "rank_gap":
            out.append(f"teacher rank {int(teacher_rank[row])}, dense rank {dense[row]}")
        elif kind == "rules_disagree":
            out.append(f"exported at {counts[row]:,} of {len(exports):,} settings")
        elif kind == "members_disagree" and members is not None:
            out.append("members' percentiles " + ", ".join(f"{n} {p:.2f}" for n, p in zip(names, members[row])))
        elif kind == "like_positive":
            out.append(f"teacher {score[row]:.3f}: percentile {100 * global_pct[row]:.1f} of all candidates, "
                       f"{100 * query_pct[row]:.0f} of its query's")
        else:
            out.append("uniform check (keeps the estimate unbiased)")
    return out
