"""The false-negative margins of curate: each query's positive reference score (the lowest, median, mean or highest
of its scored positives, or "auto", chosen per pool), the lines the margins draw below it, and the pool signal
"auto" chooses by (`positive_like_share`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .rules import CurateParams

__all__ = ["MarginRef", "REF_NAMES", "AUTO_SHARE", "AUTO_MARGIN", "AUTO_MEASURED", "positive_ref",
           "positive_like_share", "auto_margin_ref", "auto_sentence", "margin_line", "margin_thresholds", "pool_share"]

MarginRef = Literal["auto", "min", "median", "mean", "max"]
REF_NAMES: dict[str, str] = {"min": "lowest", "median": "median", "mean": "mean", "max": "highest"}
"""How the reasons and the summary name each margin reference ("auto" is named by the one it chose)."""

# margin_ref "auto" chooses per pool (docs/proof.md, "A reference chosen per collection"): the lowest positive where
# at least AUTO_SHARE of the candidates score above the query's best positive less AUTO_MARGIN (NFCorpus: 21%; the
# teacher sees much of the pool as relevant, naive mining trained below zero-shot and only the lowest positive's
# margin rescued the model), the median positive elsewhere (at most 9.7% on the other collections measured, where the
# median kept the hardness the lowest positive's margin cut away and trained the better model on average).
AUTO_SHARE = 0.15
AUTO_MARGIN = 0.05
AUTO_MEASURED = (0.10, 0.21)
"""The ground no measured collection lies in, from just above the highest share where the median trained the better
model (lisa, 9.7%) to just below the lowest where only the lowest positive did (NFCorpus, 21.1%). Between them the
choice is a guess, and auto's sentence asks for a proof of both."""


def positive_ref(codes: np.ndarray, n_q: int, is_pos: np.ndarray, score: np.ndarray,
                  how: MarginRef) -> np.ndarray:
    """Per query, the lowest, median, mean or highest teacher score of its scored positives; NaN where none is
    scored. `how` is never "auto": resolve it first (`Curation.margin_ref`, `auto_margin_ref`)."""
    scored = is_pos & ~np.isnan(score)
    pos_codes = codes[scored]
    pos_scores = score[scored].astype(np.float64)
    n = np.bincount(pos_codes, minlength=n_q)
    if how in ("min", "max"):
        ref = np.full(n_q, np.inf if how == "min" else -np.inf)
        (np.minimum if how == "min" else np.maximum).at(ref, pos_codes, pos_scores)
    elif how == "median":
        ref = np.full(n_q, np.nan)
        medians = pd.Series(pos_scores).groupby(pos_codes).median()
        ref[medians.index.to_numpy()] = medians.to_numpy()
    else:
        ref = np.bincount(pos_codes, weights=pos_scores, minlength=n_q) / np.maximum(n, 1)
    ref[n == 0] = np.nan
    return ref


def positive_like_share(frame: pd.DataFrame, positives: np.ndarray | None = None) -> float:
    """How much of a pool the teacher sees as relevant, the signal that margin_ref "auto" chooses by: over the
    queries with a scored positive and a scored candidate, the mean share of a query's scored candidates whose teacher
    score lies above its best positive's less AUTO_MARGIN (relative, as the margin); NaN where no query has both.
    `positives`: a row mask to count as the positives instead of the frame's is_positive (the audit adds its hidden
    positives back, so that "auto" chooses on the audit's pool what it would choose with every label)."""
    codes, uniques = pd.factorize(frame["query_id"])
    score = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)
    is_pos = frame["is_positive"].to_numpy(dtype=bool) if positives is None else np.asarray(positives, dtype=bool)
    return pool_share(codes, len(uniques), is_pos, score)


def pool_share(codes: np.ndarray, n_q: int, is_pos: np.ndarray, score: np.ndarray) -> float:
    """`positive_like_share` of rows already factorised by query (`codes`, `n_q` queries); `score` in float32."""
    best = positive_ref(codes, n_q, is_pos, score, "max")
    cand = ~is_pos & ~np.isnan(score)
    line = (best - np.abs(best) * AUTO_MARGIN)[codes[cand]]
    n = np.bincount(codes[cand], minlength=n_q)
    above = np.bincount(codes[cand], weights=score[cand] > line, minlength=n_q)
    counted_q = (n > 0) & ~np.isnan(best)
    return float(np.mean(above[counted_q] / n[counted_q])) if counted_q.any() else math.nan


def auto_margin_ref(share: float) -> MarginRef:
    """The reference margin_ref "auto" takes for a pool whose `positive_like_share` is `share`: the lowest positive
    from AUTO_SHARE up, the median below it and where the share is NaN (no query has a scored positive and a
    scored candidate, so no margin flags anything)."""
    return "min" if share >= AUTO_SHARE else "median"


def margin_line(ref: np.ndarray, params: CurateParams) -> np.ndarray | None:
    """Per query, from its positives' reference score `ref`, the teacher score above which the margin rules call a
    candidate a false negative: the lower of the relative and absolute margins' lines (a candidate above either is
    flagged); None when both margins are off, NaN where the query has no scored positive."""
    lines = []
    if params.relative_margin is not None:
        # abs(): for negative references (logits, cosines below 0) ref * (1 - m) would lie above ref.
        lines.append(ref - np.abs(ref) * params.relative_margin)
    if params.absolute_margin is not None:
        lines.append(ref - params.absolute_margin)
    return np.minimum.reduce(lines) if lines else None


def margin_thresholds(frame: pd.DataFrame, params: CurateParams, *, auto_share: float | None = None) -> pd.Series:
    """Per query id, the teacher score above which `curate` calls a candidate a false negative by the margin rules
    (the ceiling aside); NaN where no margin is on or the query has no scored positive. For drawing the rule.
    `auto_share` as for `curate`."""
    codes, uniques = pd.factorize(frame["query_id"])
    score = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)
    is_pos = frame["is_positive"].to_numpy(dtype=bool)
    how = params.margin_ref
    if how == "auto":
        how = auto_margin_ref(pool_share(codes, len(uniques), is_pos, score) if auto_share is None else auto_share)
    ref = positive_ref(codes, len(uniques), is_pos, score, how)
    margin = margin_line(ref, params)
    values = np.full(len(uniques), np.nan) if margin is None else margin
    return pd.Series(values, index=pd.Index(uniques, dtype=object))


def auto_sentence(share: float) -> str:
    """Why margin_ref "auto" chose the reference it did."""
    chose = f"Auto chose the {REF_NAMES[auto_margin_ref(share)]} positive"
    if math.isnan(share):
        return f"{chose}: no query has both a scored positive and a scored candidate."
    said = (f"{share:.1%} of candidates score above their query's best positive less {AUTO_MARGIN:.0%}")
    if share >= AUTO_SHARE:
        text = f"{chose}: {said}, {AUTO_SHARE:.0%} or more."
    else:
        text = f"{chose}: {said}, and it takes the lowest only from {AUTO_SHARE:.0%}."
    low, high = AUTO_MEASURED
    if low < share < high:
        text += (f" No collection measured so far lies between {low:.0%} and {high:.0%}: prove the lowest and the "
                 "median positive both on this data (hnm prove or the Train page, a variant for each).")
    return text
