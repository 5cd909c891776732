"""The audit's sweep: the leak figures of a pool at every point of a grid of curate settings, and the setting to
recommend. Only `curate` runs per point (pure and fast), so a sweep never re-mines or re-scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..curate.overrides import Overrides
from ..curate.rules import CurateParams, curate
from ..errors import SettingsError
from ..progress import Progress, no_progress
from ..settings import defaults, setting
from .leak import AuditFigures, audit_figures, hidden_share, percent

__all__ = ["DEFAULT_GRID", "DEFAULT_TARGET_LEAK", "DEFAULT_MIN_COVERAGE", "Recommendation", "SweepResult", "sweep",
           "grid_points"]


DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "ceiling": (None, 0.9, 0.8, 0.7, 0.6),
    "relative_margin": (None, 0.0, 0.05, 0.1, 0.2),
    "skip_n": (0, 3, 5, 10, 20),
    "near_dup": (None, 0.9, 0.8, 0.7, 0.6),
    "cluster_rule": (False, True),
}
"""The sweep's axes when none are given: the teacher ceiling, the relative margin, skip-N, the near-duplicate cosine
and the same-cluster rule (1,250 points plus the current values, about 20 s on a 50k-row pool on two cores). Ceiling values fit scores
in [0, 1] (a bi-encoder cosine or a cross-encoder's sigmoid). near_dup is on the axes because a low threshold is
the strongest single rule with MiniLM (docs/audit.md) yet unsafe as a default for models whose cosines sit high:
the sweep measures it on the user's own model."""


DEFAULT_TARGET_LEAK = setting("target_leak").default


DEFAULT_MIN_COVERAGE = setting("min_coverage").default


_FIGURE_COLUMNS = ("leak_rate", "hidden_caught", "hidden_exported", "mean_teacher", "mean_dense_rank", "dense_found",
                   "coverage", "n_selected", "n_leaked", "n_caught", "n_full_quota")


@dataclass(frozen=True)
class Recommendation:
    """The setting the sweep recommends: `params` (the base settings with the swept ones replaced), its figures,
    whether it met the targets, and a sentence saying why it was chosen."""

    params: CurateParams
    settings: dict[str, Any]
    figures: AuditFigures
    met_target: bool
    reason: str


@dataclass(frozen=True, eq=False)
class SweepResult:
    """One row per grid point in `table`: the swept settings (one column per axis, None = off), then the figures
    (`leak_rate`, `hidden_caught`, `hidden_exported`, `mean_teacher`, `mean_dense_rank`, `coverage`, counts).

    `figures[i]` are the full figures of row i. `current` is the row of `base` (the settings the sweep started
    from: every axis includes its base value, so a chart can mark the current slider position). `recommendation`
    is the hardest setting (highest `mean_teacher`) with `leak_rate <= target_leak` and `coverage >= min_coverage`
    (see `Recommendation.met_target`); `recommend()` picks again for other targets without curating anything.
    """

    table: pd.DataFrame
    axes: dict[str, tuple[Any, ...]]
    base: CurateParams
    current: int
    figures: tuple[AuditFigures, ...]
    target_leak: float
    min_coverage: float
    recommendation: Recommendation

    def recommend(self, target_leak: float | None = None, min_coverage: float | None = None) -> Recommendation:
        """The recommendation for other targets (None keeps the sweep's), from the table alone."""
        target_leak = self.target_leak if target_leak is None else target_leak
        min_coverage = self.min_coverage if min_coverage is None else min_coverage
        check_fractions(target_leak=target_leak, min_coverage=min_coverage)
        return _recommendation(self.table, self.figures, self.base, list(self.axes), target_leak, min_coverage)

    def frontier(self) -> pd.DataFrame:
        """The rows no other row beats on both leak and hardness, among those with coverage >= min_coverage, by
        leak ascending: the curve a chart draws (leak on one axis, mean teacher score on the other)."""
        covered = self.table[self.table["coverage"].fillna(0.0) >= self.min_coverage]
        ordered = covered.sort_values(["leak_rate", "mean_teacher"], ascending=[True, False], kind="stable",
                                      na_position="last")
        best = -np.inf
        keep = []
        for index, hardness in zip(ordered.index, ordered["mean_teacher"].fillna(-np.inf)):
            if hardness > best:
                keep.append(index)
                best = hardness
        return ordered.loc[keep]

    def format_frontier(self) -> str:
        """The frontier as a plain-text table, with the current (*) and recommended (>) rows marked (and added
        when they are off the frontier)."""
        rows = self.frontier()
        extra = [i for i in (self.current, self.table.index[self._recommended_row()]) if i not in rows.index]
        rows = pd.concat([rows, self.table.loc[extra]]) if extra else rows
        rec = self._recommended_row()
        out = pd.DataFrame({"": ["*" * (i == self.current) + ">" * (i == rec) for i in rows.index]})
        for name in self.axes:
            out[name] = ["off" if pd.isna(v) else str(v) for v in rows[name]]
        out["leak"] = [percent(v) for v in rows["leak_rate"]]
        out["caught"] = [percent(v) for v in rows["hidden_caught"]]
        out["teacher"] = [f"{v:.3f}" for v in rows["mean_teacher"]]
        out["dense rank"] = [f"{v:.1f}" for v in rows["mean_dense_rank"]]
        out["coverage"] = [percent(v) for v in rows["coverage"]]
        title = (f"Sweep of {len(self.table):,} settings: the leak / hardness frontier at coverage >= "
                 f"{self.min_coverage:.0%} (* current, > recommended)")
        return title + "\n" + out.to_string(index=False)

    def _recommended_row(self) -> int:
        hit = self.row(self.recommendation.params)
        return self.current if hit is None else hit

    def row(self, params: CurateParams) -> int | None:
        """Index in `table` of the grid point equal to `params` on every axis (other settings are ignored), or
        None when `params` lies off the grid."""
        mask = np.ones(len(self.table), dtype=bool)
        for name in self.axes:
            mask &= _column_equals(self.table[name], getattr(params, name))
        hits = np.flatnonzero(mask)
        return int(hits[0]) if len(hits) else None


def _column_equals(column: pd.Series, value: Any) -> np.ndarray:
    if value is None:
        return column.isna().to_numpy()
    return (column == value).fillna(False).to_numpy(dtype=bool)


def check_grid(grid: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
    """The grid with each value checked by its setting and repeats dropped; SettingsError for an axis that is not
    a curate setting or has no values."""
    curate_settings = defaults("curate")
    out: dict[str, tuple[Any, ...]] = {}
    for name, values in grid.items():
        if name not in curate_settings:
            raise SettingsError(f"sweep axis {name!r} is not a curate setting; choose from "
                                f"{', '.join(curate_settings)}")
        values = tuple(values)
        if not values:
            raise SettingsError(f"sweep axis {name!r} has no values; give at least one")
        spec = setting(name)
        out[name] = tuple(dict.fromkeys(spec.check(v) for v in values))
    return out


def sweep(
    frame: pd.DataFrame,
    hidden: np.ndarray,
    base: CurateParams,
    *,
    n_hidden: int,
    grid: Mapping[str, Sequence[Any]] | None = None,
    target_leak: float = DEFAULT_TARGET_LEAK,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    overrides: Overrides | None = None,
    progress: Progress = no_progress,
) -> SweepResult:
    """Curate `frame` at every point of `grid` (setting name -> values; default DEFAULT_GRID) with the other
    settings of `base`, compute the audit figures of each, and recommend one.

    Only `curate` runs per point (pure and fast): nothing is re-mined or re-scored. Each axis also gets the base
    value, so the current setting is always a row (`SweepResult.current`).
    target_leak: the highest leak rate the recommendation may have (a fraction; 0.02 = 2%).
    min_coverage: the lowest share of queries with their full quota the recommendation may have.
    overrides: a person's verdicts, applied at every point as curate applies them (the leak of what would be
        exported with them; by default the rules alone are measured).
    """
    check_fractions(target_leak=target_leak, min_coverage=min_coverage)
    axes, points = grid_points(base, grid)
    names = list(axes)
    rows: list[dict[str, Any]] = []
    figures: list[AuditFigures] = []
    share = hidden_share(frame, hidden)
    progress("audit sweep", 0, len(points))
    for i, params in enumerate(points):
        point = tuple(getattr(params, n) for n in names)
        fig = audit_figures(frame, hidden, curate(frame, params, overrides, auto_share=share), n_hidden=n_hidden)
        figures.append(fig)
        rows.append({**dict(zip(names, point)), **{c: getattr(fig, c) for c in _FIGURE_COLUMNS}})
        progress("audit sweep", i + 1, len(points))
    table = pd.DataFrame(rows, columns=[*names, *_FIGURE_COLUMNS])
    current = int(np.flatnonzero(np.all([_column_equals(table[n], getattr(base, n)) for n in names], axis=0))[0])
    recommendation = _recommendation(table, figures, base, names, target_leak, min_coverage)
    return SweepResult(table=table, axes=axes, base=base, current=current, figures=tuple(figures),
                       target_leak=float(target_leak), min_coverage=float(min_coverage),
                       recommendation=recommendation)


def _recommendation(table: pd.DataFrame, figures: Sequence[AuditFigures], base: CurateParams, names: list[str],
                    target_leak: float, min_coverage: float) -> Recommendation:
    pick, met, reason = _recommend(table, target_leak, min_coverage)
    # back from the table's NaN / numpy scalars to the settings' own types (None = off)
    settings = {n: None if pd.isna(table.at[pick, n]) else setting(n).check(table.at[pick, n]) for n in names}
    return Recommendation(params=dataclasses.replace(base, **settings), settings=settings, figures=figures[pick],
                          met_target=met, reason=reason)


def grid_points(base: CurateParams, grid: Mapping[str, Sequence[Any]] | None = None
                ) -> tuple[dict[str, tuple[Any, ...]], list[CurateParams]]:
    """The sweep's axes (each with `base`'s value first) and its points, `base` with the swept settings replaced, in
    the order of the sweep table's rows; `grid` as for `sweep` (default DEFAULT_GRID)."""
    axes = check_grid(DEFAULT_GRID if grid is None else grid)
    axes = {name: tuple(dict.fromkeys((getattr(base, name), *values))) for name, values in axes.items()}
    names = list(axes)
    return axes, [dataclasses.replace(base, **dict(zip(names, point)))
                  for point in _product([axes[n] for n in names])]


def check_fractions(**values: float) -> None:
    """SettingsError naming the first of `values` (name=fraction) outside [0, 1]."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise SettingsError(f"{name}: {value!r} must be a fraction between 0 and 1 (0.02 = 2%)")


def _product(axes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [()]
    for values in axes:
        out = [(*prefix, v) for prefix in out for v in values]
    return out


def _recommend(table: pd.DataFrame, target_leak: float, min_coverage: float) -> tuple[int, bool, str]:
    """(row, met the targets, why). Ties on hardness go to the lower leak, then to the earlier (gentler) row."""
    leak = table["leak_rate"].fillna(0.0).to_numpy()
    coverage = table["coverage"].fillna(0.0).to_numpy()
    hardness = table["mean_teacher"].fillna(-np.inf).to_numpy()
    ok = (leak <= target_leak) & (coverage >= min_coverage)
    if ok.any():
        rows = np.flatnonzero(ok)
        pick = int(rows[np.lexsort((rows, leak[rows], -hardness[rows]))[0]])
        return pick, True, (f"hardest setting (mean teacher score {hardness[pick]:.3f}) with leak "
                            f"{leak[pick]:.1%} <= {target_leak:.1%} and coverage {coverage[pick]:.1%} >= "
                            f"{min_coverage:.0%}")
    covered = np.flatnonzero(coverage >= min_coverage)
    if len(covered):
        pick = int(covered[np.lexsort((covered, -hardness[covered], leak[covered]))[0]])
        return pick, False, (f"no setting keeps the leak under {target_leak:.1%} with coverage >= "
                             f"{min_coverage:.0%}; this one leaks least ({leak[pick]:.1%}) at that coverage")
    rows = np.arange(len(table))
    pick = int(rows[np.lexsort((rows, leak, -coverage))[0]])
    return pick, False, (f"no setting reaches coverage {min_coverage:.0%}; this one covers most queries "
                         f"({coverage[pick]:.1%}, leak {leak[pick]:.1%})")
