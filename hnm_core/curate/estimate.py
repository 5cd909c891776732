"""Verdicts as a measurement: from the answered draws of a review queue (hnm_core.curate.review), the share of a
curation's exported negatives that are unlabelled positives, with a 95% interval.

**Estimator** (Hansen-Hurwitz). Draw k picked row i_k with probability p_k; with S the rows the curation exports and
y = 1 for a verdict of unlabelled positive, each answered draw gives

    x_k = [i_k in S] * y_k / (p_k * |S|)

whose expectation is the share itself (|S| is known exactly, so this is a mean, not a ratio). The estimate is the
mean of x over the m answered draws: unbiased for every curation whose exported rows all had a chance to be drawn
(the queue's population holds the exports of every setting it was drawn for).

**Skipped draws** (no verdict) are left out and m counts only the answered ones. The draws are independent, so this
stays unbiased when what is left unanswered does not depend on the candidates' truth: the first n of the queue in
order, or a person who stops at any point. Skipping the hard-to-judge ones is not that, and biases it.

**Interval** (Korn and Graubard, 1998): Clopper-Pearson on an effective sample size. A normal interval on skewed 0/1
data undercovers when few positives are seen (zero seen gives a zero-width interval). Here the effective size is
n_eff = p(1 - p) / var(p), the estimate's variance from the draws' spread, at most m. With no unlabelled
positive seen that variance is 0, and n_eff is m / A with A = sum_{i in S} 1 / p_i / |S|^2: the size the design
has when the truth does not depend on the priority (A = 1 for uniform draws over S, larger when draws miss S).
The bounds are the Beta quantiles of x = p * n_eff successes in n_eff trials. It is conservative for rare
events, as wanted: docs/review.md measures its coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..wording import counted

__all__ = ["ShareEstimate", "estimate_share", "estimate_table", "korn_graubard"]


@dataclass(frozen=True)
class ShareEstimate:
    """The estimated share of a curation's exported negatives that have `verdict` (unlabelled positives by
    default), its interval at `confidence`, and what it rests on: `answered` draws with a verdict, `in_export` of
    them among the exported rows, `found` of those with the verdict, `exported` rows in all, and `effective_n`."""

    share: float
    low: float
    high: float
    confidence: float
    answered: int
    in_export: int
    found: int
    exported: int
    effective_n: float
    verdict: str = "unlabelled_positive"

    @property
    def count(self) -> float:
        """The estimated number of exported negatives with the verdict."""
        return self.share * self.exported

    def sentence(self) -> str:
        what = self.verdict.replace("_", " ") + "s"
        if not self.answered:
            return f"No draw of the queue has a verdict yet, so the share of {what} is unknown."
        shown = min(self.share, 1.0)  # unbiased, not bounded: a few early verdicts can put the estimate above 1
        return (f"About {shown:.1%} of the {counted(self.exported, 'exported negative')} are {what} "
                f"({self.confidence:.0%} interval {self.low:.1%} to {self.high:.1%}; about "
                f"{shown * self.exported:,.0f}), from "
                f"{counted(self.answered, 'answered draw')}, {self.in_export:,} of them exported, "
                f"{counted(self.found, self.verdict.replace('_', ' '))}.")


def estimate_share(reviewed: pd.DataFrame, exported: np.ndarray, *, population: np.ndarray | None = None,
                   probability: np.ndarray | None = None, verdict: str = "unlabelled_positive",
                   confidence: float = 0.95) -> ShareEstimate:
    """Estimate the share of the rows `exported` holds (a curation's exported negatives, as frame positions:
    np.flatnonzero(curation.selected)) whose verdict is `verdict`.

    reviewed: the queue's draws (ReviewQueue.table with a `verdict` column, or a filled review file read back and
        matched to its queue), with `row` (frame position), `probability` (of the row per draw) and `verdict` (empty
        or NaN = not answered, left out).
    population, probability: the queue's population and its per-draw probabilities (ReviewQueue.population and
        .probability): with them, exported rows the queue could never draw are refused (the estimate would be
        biased), and the interval with no such verdict found uses the design's effective size.
    """
    if not 0.0 < confidence < 1.0:
        raise DataError("estimate", f"confidence {confidence!r} is not between 0 and 1.", fix="use 0.95")
    exported = np.unique(np.asarray(exported, dtype=np.int64))
    n_exported = len(exported)
    answers = reviewed["verdict"].fillna("").astype(str).to_numpy()
    answered = answers != ""
    rows = reviewed["row"].to_numpy(dtype=np.int64)[answered]
    p = reviewed["probability"].to_numpy(dtype=np.float64)[answered]
    m = len(rows)
    spread = 1.0
    if population is not None and probability is not None and n_exported:
        at = np.minimum(np.searchsorted(population, exported), len(population) - 1)
        drawable = (population[at] == exported) & (probability[at] > 0)
        if not drawable.all():
            raise DataError("estimate", f"{counted(int((~drawable).sum()), 'exported negative')} at these settings "
                                        "could never be drawn by the queue, so its verdicts cannot estimate their "
                                        "share.", fix="estimate at the settings the queue was drawn for (or draw "
                                                      "one with these)")
        spread = float(np.sum(1.0 / probability[at])) / n_exported ** 2
    if m == 0 or n_exported == 0:
        return ShareEstimate(math.nan if m == 0 else 0.0, 0.0, 1.0, confidence, m, 0, 0, n_exported, 0.0, verdict)
    hit = np.isin(rows, exported)
    yes = hit & (answers[answered] == verdict)
    x = np.where(yes, 1.0 / (p * n_exported), 0.0)
    share = float(x.mean())
    variance = float(x.var(ddof=1)) / m if m > 1 else math.inf
    clipped = min(share, 1.0)
    if yes.any() and variance > 0:
        n_eff = min(float(m), clipped * (1.0 - clipped) / variance) if clipped < 1.0 else float(m)
    else:
        n_eff = min(float(m), m / spread)
    low, high = korn_graubard(clipped, n_eff, confidence)
    return ShareEstimate(share, low, high, confidence, m, int(hit.sum()), int(yes.sum()), n_exported, n_eff, verdict)


def estimate_table(reviewed: pd.DataFrame, exports: Sequence[np.ndarray], *, population: np.ndarray | None = None,
                   probability: np.ndarray | None = None, verdict: str = "unlabelled_positive",
                   confidence: float = 0.95) -> pd.DataFrame:
    """`estimate_share` at each of several settings (`exports`: the frame positions each exports), one row each:
    share, low, high, found, in_export, answered, exported."""
    rows = []
    for positions in exports:
        e = estimate_share(reviewed, positions, population=population, probability=probability, verdict=verdict,
                           confidence=confidence)
        rows.append({"share": e.share, "low": e.low, "high": e.high, "found": e.found, "in_export": e.in_export,
                     "answered": e.answered, "exported": e.exported})
    return pd.DataFrame(rows, columns=["share", "low", "high", "found", "in_export", "answered", "exported"])


def korn_graubard(share: float, n_eff: float, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson bounds for `share` observed on an effective sample of `n_eff` (fractional counts allowed:
    the Beta quantiles of x = share * n_eff successes)."""
    from scipy.stats import beta

    alpha = 1.0 - confidence
    if n_eff <= 0:
        return 0.0, 1.0
    x = share * n_eff
    low = float(beta.ppf(alpha / 2, x, n_eff - x + 1)) if x > 0 else 0.0
    high = float(beta.ppf(1 - alpha / 2, x + 1, n_eff - x)) if x < n_eff else 1.0
    return low, high
