"""Verdicts beside the audit: what every setting of the sweep grid exports (for the review queue's population and
the estimate at each point), and a recommendation that reads both the audit's hidden-positive leak and the share of
unlabelled positives a person's verdicts estimate (hnm_core.curate.estimate).

    exports = grid_exports(frame, params)                         # positions exported at each grid point
    queue = review_queue(frame, curate(frame, params), exports=exports)
    table = estimate_table(reviewed, exports, population=queue.population, probability=queue.probability)
    rec = recommend_with_verdicts(report.sweep, table)            # the Tune page's pick

The audit measures labelled positives it hid; the verdicts measure the unlabelled ones the collection really has.
Neither alone is the false-negative rate of the export: the recommendation asks both to stay under the target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..curate.rules import CurateParams, curate
from ..errors import DataError
from ..progress import Progress, no_progress
from ..settings import setting
from .leak import percent
from .sweep import Recommendation, SweepResult, check_fractions, grid_points

__all__ = ["grid_exports", "recommend_with_verdicts", "pick_with_verdicts"]


def grid_exports(frame: pd.DataFrame, base: CurateParams, grid: Mapping[str, Sequence[Any]] | None = None, *,
                 progress: Progress = no_progress) -> list[np.ndarray]:
    """The frame positions `curate` exports at every point of the sweep grid (`audit.sweep.grid_points`, in the
    sweep table's row order): the rules alone, no verdict applied. Curates each point once (about as long as a
    sweep: 1,500 points at the defaults)."""
    _, points = grid_points(base, grid)
    out = []
    progress("settings exports", 0, len(points))
    for i, params in enumerate(points):
        out.append(np.flatnonzero(curate(frame, params).selected).astype(np.int32))
        progress("settings exports", i + 1, len(points))
    return out


def recommend_with_verdicts(result: SweepResult, estimates: pd.DataFrame, *, target_leak: float | None = None,
                            min_coverage: float | None = None) -> Recommendation:
    """The hardest setting (highest mean teacher score) whose audit leak and estimated share of unlabelled
    positives both stay at or under `target_leak`, with coverage at least `min_coverage` (None keeps the sweep's).

    estimates: `curate.estimate.estimate_table` at the same grid points as `result` (same base settings and grid),
        one row per row of `result.table`. When no setting qualifies, the one whose larger of the two is lowest at
        that coverage (`met_target` False), else the one covering most queries.
    """
    target_leak = result.target_leak if target_leak is None else target_leak
    min_coverage = result.min_coverage if min_coverage is None else min_coverage
    pick, met, why = pick_with_verdicts(result.table, estimates, target_leak=target_leak, min_coverage=min_coverage)
    settings = {n: None if pd.isna(result.table.at[pick, n]) else setting(n).check(result.table.at[pick, n])
                for n in result.axes}
    return Recommendation(params=dataclasses.replace(result.base, **settings), settings=settings,
                          figures=result.figures[pick], met_target=met, reason=why)


def pick_with_verdicts(table: pd.DataFrame, estimates: pd.DataFrame, *, target_leak: float,
                       min_coverage: float) -> tuple[int, bool, str]:
    """`recommend_with_verdicts` on tables: a sweep table (SweepResult.table, or an audit folder's sweep.csv) and
    the estimates at its rows; (row, met the targets, why)."""
    check_fractions(target_leak=target_leak, min_coverage=min_coverage)
    if len(estimates) != len(table):
        raise DataError("estimates", f"{len(estimates):,} rows for a sweep of {len(table):,} settings.",
                        fix="estimate at the sweep's grid points (audit.verdicts.grid_exports with its base and grid)")
    leak = table["leak_rate"].fillna(0.0).to_numpy()
    share = estimates["share"].fillna(0.0).to_numpy()
    risk = np.fmax(leak, share)
    coverage = table["coverage"].fillna(0.0).to_numpy()
    hardness = table["mean_teacher"].fillna(-np.inf).to_numpy()
    rows = np.arange(len(risk))
    ok = (risk <= target_leak) & (coverage >= min_coverage)
    covered = coverage >= min_coverage
    if ok.any():
        pick = int(rows[ok][np.lexsort((rows[ok], risk[ok], -hardness[ok]))[0]])
        met, why = True, (f"hardest setting (mean teacher score {hardness[pick]:.3f}) whose audit leak "
                          f"{percent(leak[pick])} and estimated unlabelled positives {percent(share[pick])} both "
                          f"stay at or under {target_leak:.1%}, coverage {coverage[pick]:.1%}")
    elif covered.any():
        pick = int(rows[covered][np.lexsort((rows[covered], -hardness[covered], risk[covered]))[0]])
        met, why = False, (f"no setting keeps both the audit leak and the estimated unlabelled positives under "
                           f"{target_leak:.1%} with coverage >= {min_coverage:.0%}; this one has the lowest larger "
                           f"of the two (leak {percent(leak[pick])}, estimated {percent(share[pick])})")
    else:
        pick = int(rows[np.lexsort((rows, risk, -coverage))[0]])
        met, why = False, (f"no setting reaches coverage {min_coverage:.0%}; this one covers most queries "
                           f"({coverage[pick]:.1%})")
    return pick, met, why + (f" (the estimate's interval {percent(estimates['low'].iat[pick])} to "
                             f"{percent(estimates['high'].iat[pick])})")
