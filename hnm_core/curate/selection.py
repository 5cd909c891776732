"""What a curation exports, in numbers: the selected negatives' teacher scores against the positives and the whole
hard band, their mean hardness, what each false-negative rule dropped, and which negatives changed between two
curations of the same pool (the Tune page draws these on every slider move, so each is a few vectorised passes).

    view = selection_view(frame, curation)                  -> ScoreGroups per group, mean hardness, rule drops
    change = selection_change(frame, before, after)          -> kept / added / dropped over all queries
    rows = query_change(frame, before, after, "q1")          -> the query's negatives before and after, one row each
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import DataError
from .rules import Curation, Label, RuleCount

__all__ = ["GROUPS", "FALSE_NEGATIVE_RULES", "ScoreGroups", "SelectionView", "SelectionChange", "selection_view",
           "selection_change", "query_change", "ScoreRange", "score_range"]

GROUPS: tuple[str, ...] = ("selected negatives", "hard band", "labelled positives")
"""The score groups of `ScoreGroups`, in drawing order: what is exported, what it is drawn from, what it pairs with."""

FALSE_NEGATIVE_RULES: tuple[Label, ...] = ("false_negative", "near_duplicate", "same_cluster", "skipped")
"""The rules that drop a candidate as a likely unlabelled positive (skip-N too: a source's top ranks are most often
unlabelled positives); the rest drop it as too easy or unscored."""


class ScoreGroups(NamedTuple):
    """Teacher-score histograms of each of `GROUPS` over the same `edges` (len(edges) - 1 bins); NaN scores are
    left out. `sizes` and `means` are over the group's scored rows (mean NaN for an empty group)."""

    edges: np.ndarray
    counts: dict[str, np.ndarray]
    sizes: dict[str, int]
    means: dict[str, float]


@dataclass(frozen=True)
class SelectionView:
    """What `curation` exports. `mean_hardness`: the mean teacher score of the selected negatives (NaN when none);
    `drops`: the RuleCount of each of FALSE_NEGATIVE_RULES, in that order."""

    n_selected: int
    mean_hardness: float
    groups: ScoreGroups
    drops: tuple[RuleCount, ...]

    @property
    def n_false_negatives(self) -> int:
        """Candidates dropped as likely false negatives, by any of the rules."""
        return sum(rc.count for rc in self.drops)

    def drops_line(self) -> str:
        """Each rule's drops in a line, e.g. "ceiling / margins 12 · near-duplicate 0 · same cluster 1,060 · skip
        top N 0"."""
        names = {"false_negative": "ceiling / margins", "near_duplicate": "near-duplicate",
                 "same_cluster": "same cluster", "skipped": "skip top N"}
        return " · ".join(f"{names[rc.label]} {rc.count:,}" for rc in self.drops)


class SelectionChange(NamedTuple):
    """Selected negatives of one curation against another's: in both, only in the new one, only in the old one."""

    kept: int
    added: int
    dropped: int


def _check(frame: pd.DataFrame, *curations: Curation) -> None:
    for curation in curations:
        if len(curation.labels) != len(frame):
            raise DataError("pool table", f"the curation has {len(curation.labels):,} rows but the table "
                                          f"{len(frame):,}.", fix="pass the frame the curation was computed from")


def selection_view(frame: pd.DataFrame, curation: Curation, *, bins: int = 40) -> SelectionView:
    """The selected negatives' teacher scores against the hard band and the labelled positives, binned over the range
    of every scored row of those groups, with the mean hardness and each false-negative rule's drops."""
    _check(frame, curation)
    score = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)
    masks = dict(zip(GROUPS, (curation.selected, np.asarray(curation.labels == "hard"),
                              frame["is_positive"].to_numpy(dtype=bool))))
    scored = ~np.isnan(score)
    shown = scored & np.logical_or.reduce(list(masks.values()))
    lo, hi = (float(score[shown].min()), float(score[shown].max())) if shown.any() else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    counts, sizes, means = {}, {}, {}
    for name, mask in masks.items():
        values = score[mask & scored]
        counts[name] = np.histogram(values, bins=edges)[0]
        sizes[name] = len(values)
        means[name] = float(values.mean(dtype=np.float64)) if len(values) else float("nan")
    drops = tuple(rc for rc in curation.counts if rc.label in FALSE_NEGATIVE_RULES)
    return SelectionView(curation.n_selected, means["selected negatives"], ScoreGroups(edges, counts, sizes, means),
                         drops)


def selection_change(frame: pd.DataFrame, before: Curation, after: Curation) -> SelectionChange:
    """How the selected negatives of `after` differ from those of `before` (two curations of `frame`)."""
    _check(frame, before, after)
    old, new = before.selected, after.selected
    return SelectionChange(int((old & new).sum()), int((new & ~old).sum()), int((old & ~new).sum()))


def query_change(frame: pd.DataFrame, before: Curation, after: Curation, query_id: str) -> pd.DataFrame:
    """The negatives of `query_id` selected by `before` or by `after`, one row each, best teacher score first:
    doc_id, teacher_score, rank_before and rank_after (neg_rank, 0 = not selected), change ("kept", "added",
    "dropped") and the label `after` gave it (why a dropped one went: "skipped", "same_cluster", ...)."""
    _check(frame, before, after)
    rows = np.flatnonzero((frame["query_id"] == query_id).to_numpy(dtype=bool))
    rows = rows[before.selected[rows] | after.selected[rows]]
    old, new = before.selected[rows], after.selected[rows]
    table = pd.DataFrame({
        "doc_id": frame["doc_id"].to_numpy()[rows],
        "teacher_score": frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)[rows],
        "rank_before": before.neg_rank[rows],
        "rank_after": after.neg_rank[rows],
        "change": np.where(old & new, "kept", np.where(new, "added", "dropped")),
        "label_after": np.asarray(after.labels[rows]),
    })
    return table.sort_values(["teacher_score", "doc_id"], ascending=[False, True], ignore_index=True)


class ScoreRange(NamedTuple):
    """The teacher scores of a pool, as the Tune sliders need them: the range to the hundredth, and starting
    values for the ceiling (the median positive: a candidate scoring like a typical positive is suspect) and the
    floor (the 10th percentile of candidates)."""

    lo: float
    hi: float
    ceiling_hint: float
    floor_hint: float


def score_range(frame: pd.DataFrame) -> ScoreRange:
    """See ScoreRange; (0, 1) with hints at the ends when nothing is scored."""
    scores = frame["teacher_score"].to_numpy(np.float32, na_value=np.nan)
    is_pos = frame["is_positive"].to_numpy(bool)
    scored = ~np.isnan(scores)
    if not scored.any():
        return ScoreRange(0.0, 1.0, 1.0, 0.0)
    lo = math.floor(float(scores[scored].min()) * 100) / 100
    hi = math.ceil(float(scores[scored].max()) * 100) / 100
    positives, candidates = scores[scored & is_pos], scores[scored & ~is_pos]
    ceiling = round(float(np.median(positives)), 2) if len(positives) else hi
    floor = round(float(np.quantile(candidates, 0.1)), 2) if len(candidates) else lo
    return ScoreRange(lo, hi, min(max(ceiling, lo), hi), min(max(floor, lo), hi))
