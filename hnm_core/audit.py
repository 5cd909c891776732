"""Stage 8, audit: measure how many labelled positives the false-negative rules let through as negatives.

Hide part of each query's labelled positives, mine as if they were unknown, curate, and count: the hidden positives
are real positives the miner did not know about, so every one exported as a negative is a measured leak. The same
figures over a grid of curate settings (a sweep: `curate` only, never a re-mine) show which setting keeps negatives
hard without leaking positives, and a recommendation picks the hardest setting whose leak stays under a target.

    report = audit(collection, {"seed": 0}, hide=0.5, cache_dir=...)   # split, mine split.apply(collection), sweep
    split  = hide_positives(collection, hide=0.5, seed=0)
    report = audit_pool(pool, split, params)                            # a pool already mined from split.apply(...)
    result = sweep(report.pool.frame, report.hidden, params, n_hidden=report.split.n_hidden)

The figures (defined precisely in docs/audit.md), over all queries of the pool:

    leak_rate        exported negatives that are hidden positives / exported negatives
    hidden_caught    hidden positives in the pool labelled false_negative / near_duplicate / same_cluster
                     / hidden positives in the pool
    hidden_exported  exported negatives that are hidden positives / hidden positives (in the pool or not)
    mean_teacher     mean teacher score of the exported negatives (hardness)
    mean_dense_rank  mean dense rank of the exported negatives the dense retriever found (hardness; lower = harder)
    dense_found      exported negatives in the dense top-K / exported negatives
    coverage         queries with the full quota of negatives / queries

"Exported negatives" are the rows `curate` selects: one per (query, negative), not one per triplet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .curate import LABELS, CurateParams, Curation, curate
from .data import Collection, normalize_text
from .errors import DataError, SettingsError
from .models import LoadedModel
from .manifest import fingerprints, package_versions, to_json, write_json
from .pool import Pool
from .progress import Progress, no_progress
from .settings import defaults, setting, validate

__all__ = [
    "CAUGHT_LABELS",
    "DEFAULT_GRID",
    "HiddenSplit",
    "hide_positives",
    "hidden_rows",
    "AuditFigures",
    "audit_figures",
    "Recommendation",
    "SweepResult",
    "sweep",
    "AuditReport",
    "audit",
    "audit_pool",
    "REPORT_FILES",
    "save_report",
]

CAUGHT_LABELS: tuple[str, ...] = ("false_negative", "near_duplicate", "same_cluster")
"""Labels that count as the rules catching a hidden positive (skipped / easy / unscored rows are not caught: they
are dropped for other reasons and would leak under other settings)."""

DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "ceiling": (None, 0.9, 0.8, 0.7, 0.6),
    "relative_margin": (None, 0.0, 0.05, 0.1, 0.2),
    "skip_n": (0, 3, 5, 10, 20),
    "near_dup": (None, 0.9, 0.8, 0.7, 0.6),
}
"""The sweep's axes when none are given: the teacher ceiling, the relative margin, skip-N and the near-duplicate
cosine (625 points plus the current values, about 10 s on a 50k-row pool on two cores). Ceiling values fit scores
in [0, 1] (a bi-encoder cosine or a cross-encoder's sigmoid). near_dup is on the axes because a low threshold is
the strongest single rule with MiniLM (docs/audit.md) yet unsafe as a default for models whose cosines sit high:
the sweep measures it on the user's own model."""

DEFAULT_TARGET_LEAK = 0.02
DEFAULT_MIN_COVERAGE = 0.95


# ---------------------------------------------------------------------------------------------------------------------
# The hidden split


@dataclass(frozen=True)
class HiddenSplit:
    """Which labelled positives an audit hides. `visible` holds every query's positives minus the hidden ones (at
    least one each); `hidden` holds only the audited queries (those with at least two positives)."""

    hide: float
    seed: int
    visible: dict[str, tuple[str, ...]]
    hidden: dict[str, tuple[str, ...]]

    @property
    def n_hidden(self) -> int:
        """Hidden positives, all queries together."""
        return sum(len(docs) for docs in self.hidden.values())

    @property
    def n_audited(self) -> int:
        """Queries with at least one hidden positive."""
        return len(self.hidden)

    def apply(self, collection: Collection) -> Collection:
        """`collection` with only the visible positives labelled: what the audit mines."""
        return dataclasses.replace(collection, positives=dict(self.visible),
                                   source=f"{collection.source} (audit: {self.n_hidden:,} positives hidden, "
                                          f"hide {self.hide:g}, seed {self.seed})")

    def to_frame(self) -> pd.DataFrame:
        """query_id, doc_id of the hidden positives (what `save_report` writes as hidden_positives.csv)."""
        rows = [(q, d) for q, docs in self.hidden.items() for d in docs]
        return pd.DataFrame(rows, columns=["query_id", "doc_id"]).astype("string")


def hide_positives(collection: Collection, *, hide: float = 0.5, seed: int = 0) -> HiddenSplit:
    """Hide round(hide * n) of the n positives of every query with n >= 2 (at least 1, at most n - 1).

    Which ones is decided per (seed, query id, doc id) by a hash, not by a random stream, so the split of a query
    does not depend on the order or number of the other queries: the same seed hides the same positives in a
    collection and in any subset of it.
    """
    if isinstance(hide, bool) or not isinstance(hide, (int, float)) or not 0.0 < hide < 1.0:
        raise SettingsError(f"hide: {hide!r} must be a fraction strictly between 0 and 1 (e.g. 0.5)")
    seed = setting("seed").check(seed)
    visible: dict[str, tuple[str, ...]] = {}
    hidden: dict[str, tuple[str, ...]] = {}
    for qid in collection.query_ids:
        docs = collection.positives[qid]
        n = len(docs)
        if n < 2:
            visible[qid] = tuple(docs)
            continue
        k = min(n - 1, max(1, math.floor(hide * n + 0.5)))  # round half up: 3 positives at 0.5 hide 2
        order = sorted(range(n), key=lambda i: _split_key(seed, qid, docs[i]))
        chosen = set(order[:k])
        hidden[qid] = tuple(d for i, d in enumerate(docs) if i in chosen)
        visible[qid] = tuple(d for i, d in enumerate(docs) if i not in chosen)
    return HiddenSplit(hide=float(hide), seed=seed, visible=visible, hidden=hidden)


def _split_key(seed: int, query_id: str, doc_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{query_id}\x00{doc_id}".encode(), digest_size=8).digest()


def hidden_rows(frame: pd.DataFrame, collection: Collection, split: HiddenSplit) -> np.ndarray:
    """Boolean mask aligned with `frame`: the row's document is one of its query's hidden positives, or has the
    same normalised text as one (the pool builder treats such duplicates as the same document)."""
    by_text: dict[str, list[str]] = {}
    hidden_texts = {normalize_text(collection.doc_texts[collection.doc_index[d]])
                    for docs in split.hidden.values() for d in docs}
    for doc_id, text in zip(collection.doc_ids, collection.doc_texts):
        norm = normalize_text(text)
        if norm in hidden_texts:
            by_text.setdefault(norm, []).append(doc_id)
    keys = {f"{qid}\x1f{same}" for qid, docs in split.hidden.items() for d in docs
            for same in by_text[normalize_text(collection.doc_texts[collection.doc_index[d]])]}
    if not keys or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    row_keys = frame["query_id"].astype(str) + "\x1f" + frame["doc_id"].astype(str)
    return row_keys.isin(keys).to_numpy(dtype=bool)


# ---------------------------------------------------------------------------------------------------------------------
# Figures


@dataclass(frozen=True)
class AuditFigures:
    """The audit's figures for one curation (see the module docstring and docs/audit.md for the definitions).

    Rates are NaN where their denominator is 0 (no negative exported, no hidden positive in the pool).
    `hidden_labels` counts the label each hidden positive in the pool got.
    """

    leak_rate: float
    hidden_caught: float
    hidden_exported: float
    mean_teacher: float
    mean_dense_rank: float
    dense_found: float
    coverage: float
    n_selected: int
    n_leaked: int
    n_hidden: int
    n_hidden_in_pool: int
    n_caught: int
    n_queries: int
    n_full_quota: int
    hidden_labels: dict[str, int]

    def sentences(self) -> list[str]:
        """Human lines for the CLI and the app."""
        return [
            f"Leak: {_pct(self.leak_rate)} of the {self.n_selected:,} exported negatives are hidden positives "
            f"({self.n_leaked:,}).",
            f"Caught: {_pct(self.hidden_caught)} of the {self.n_hidden_in_pool:,} hidden positives in the pool were "
            f"labelled {' / '.join(CAUGHT_LABELS)} ({self.n_caught:,}); {_pct(self.hidden_exported)} of all "
            f"{self.n_hidden:,} hidden positives were exported as negatives.",
            f"Hardness: mean teacher score {self.mean_teacher:.3f}; mean dense rank {self.mean_dense_rank:.1f} over "
            f"the {_pct(self.dense_found)} of negatives in the dense top-K.",
            f"Coverage: {self.n_full_quota:,} of {self.n_queries:,} queries ({_pct(self.coverage)}) got their full "
            "quota of negatives.",
        ]


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def audit_figures(frame: pd.DataFrame, hidden: np.ndarray, curation: Curation, *, n_hidden: int) -> AuditFigures:
    """The figures of `curation` (of `frame`), with `hidden` the mask from `hidden_rows` and `n_hidden` the number
    of hidden positives (`HiddenSplit.n_hidden`), which includes those the pool never retrieved."""
    if len(hidden) != len(frame) or len(curation.selected) != len(frame):
        raise DataError("audit", f"the frame has {len(frame):,} rows, the hidden mask {len(hidden):,} and the "
                                 f"curation {len(curation.selected):,}.",
                        fix="compute the mask and the curation on the same pool frame")
    selected = curation.selected
    codes = np.asarray(curation.labels.codes)
    hidden_codes = codes[hidden]
    label_counts = np.bincount(hidden_codes, minlength=len(LABELS))
    caught = int(sum(label_counts[LABELS.index(label)] for label in CAUGHT_LABELS))
    leaked = int((selected & hidden).sum())
    n_selected = int(selected.sum())
    n_in_pool = int(hidden.sum())
    scores = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)[selected]
    dense = frame["dense_rank"].to_numpy(dtype=np.int64)[selected]
    found = dense[dense > 0]
    return AuditFigures(
        leak_rate=_ratio(leaked, n_selected),
        hidden_caught=_ratio(caught, n_in_pool),
        hidden_exported=_ratio(leaked, n_hidden),
        mean_teacher=float(np.nanmean(scores)) if len(scores) and not np.isnan(scores).all() else math.nan,
        mean_dense_rank=float(found.mean()) if len(found) else math.nan,
        dense_found=_ratio(len(found), n_selected),
        coverage=_ratio(curation.n_full_quota, curation.n_queries),
        n_selected=n_selected,
        n_leaked=leaked,
        n_hidden=n_hidden,
        n_hidden_in_pool=n_in_pool,
        n_caught=caught,
        n_queries=curation.n_queries,
        n_full_quota=curation.n_full_quota,
        hidden_labels={label: int(label_counts[i]) for i, label in enumerate(LABELS) if label_counts[i]},
    )


# ---------------------------------------------------------------------------------------------------------------------
# Sweep and recommendation

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
        _check_fractions(target_leak=target_leak, min_coverage=min_coverage)
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
        out["leak"] = [_pct(v) for v in rows["leak_rate"]]
        out["caught"] = [_pct(v) for v in rows["hidden_caught"]]
        out["teacher"] = [f"{v:.3f}" for v in rows["mean_teacher"]]
        out["dense rank"] = [f"{v:.1f}" for v in rows["mean_dense_rank"]]
        out["coverage"] = [_pct(v) for v in rows["coverage"]]
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


def _check_grid(grid: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
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
    progress: Progress = no_progress,
) -> SweepResult:
    """Curate `frame` at every point of `grid` (setting name -> values; default DEFAULT_GRID) with the other
    settings of `base`, compute the audit figures of each, and recommend one.

    Only `curate` runs per point (pure and fast): nothing is re-mined or re-scored. Each axis also gets the base
    value, so the current setting is always a row (`SweepResult.current`).
    target_leak: the highest leak rate the recommendation may have (a fraction; 0.02 = 2%).
    min_coverage: the lowest share of queries with their full quota the recommendation may have.
    """
    _check_fractions(target_leak=target_leak, min_coverage=min_coverage)
    axes = _check_grid(DEFAULT_GRID if grid is None else grid)
    axes = {name: tuple(dict.fromkeys((getattr(base, name), *values))) for name, values in axes.items()}
    names = list(axes)
    points = list(_product([axes[n] for n in names]))
    rows: list[dict[str, Any]] = []
    figures: list[AuditFigures] = []
    progress("audit sweep", 0, len(points))
    for i, point in enumerate(points):
        params = dataclasses.replace(base, **dict(zip(names, point)))
        fig = audit_figures(frame, hidden, curate(frame, params), n_hidden=n_hidden)
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


def _check_fractions(**values: float) -> None:
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


# ---------------------------------------------------------------------------------------------------------------------
# The whole audit


@dataclass(frozen=True, eq=False)
class AuditReport:
    """An audit: the split, the audit pool (mined with the visible positives) and its `hidden` row mask, the
    curation at `params` with its figures, and the sweep. `to_dict()` is the JSON report."""

    split: HiddenSplit
    pool: Pool
    hidden: np.ndarray
    params: CurateParams
    curation: Curation
    figures: AuditFigures
    sweep: SweepResult

    def to_dict(self) -> dict[str, Any]:
        rec = self.sweep.recommendation
        return {
            "collection": self.pool.meta.get("collection", {"name": self.pool.collection.name}),
            "split": {"hide": self.split.hide, "seed": self.split.seed, "audited_queries": self.split.n_audited,
                      "hidden_positives": self.split.n_hidden},
            "settings": {**self.pool.meta.get("settings", {}), **asdict(self.params)},
            "figures": asdict(self.figures),
            "recommendation": {"settings": rec.settings, "met_target": rec.met_target, "reason": rec.reason,
                               "figures": asdict(rec.figures)},
            "sweep": {"axes": {k: list(v) for k, v in self.sweep.axes.items()}, "points": len(self.sweep.table),
                      "target_leak": self.sweep.target_leak, "min_coverage": self.sweep.min_coverage},
            "short_queries": [q._asdict() for q in self.curation.short_queries],
        }

    def to_json(self) -> str:
        """`to_dict()` as JSON text (rates without a denominator are null)."""
        return to_json(self.to_dict()).decode()

    def sentences(self) -> list[str]:
        rec = self.sweep.recommendation
        flags = " ".join(f"{setting(n).flag} {'off' if v is None else v}" for n, v in rec.settings.items())
        return [
            f"Hid {self.split.n_hidden:,} positives of {self.split.n_audited:,} queries (hide {self.split.hide:g}, "
            f"seed {self.split.seed}); mined {self.figures.n_queries:,} queries with the rest.",
            *self.figures.sentences(),
            f"Recommended ({'meets the targets' if rec.met_target else 'targets not met'}): {flags}: {rec.reason}.",
            *[f"  {line}" for line in rec.figures.sentences()],
        ]


def audit_pool(
    pool: Pool,
    split: HiddenSplit,
    params: CurateParams | None = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    target_leak: float = DEFAULT_TARGET_LEAK,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    progress: Progress = no_progress,
) -> AuditReport:
    """Audit a pool already mined (and teacher-scored) from `split.apply(collection)`: curate at `params` (default
    settings when None) and sweep, without mining again. The app keeps such a pool and re-sweeps it at will."""
    frame = pool.frame
    leaked_labels = [q for q, docs in split.hidden.items() if set(docs) & set(pool.collection.positives.get(q, ()))]
    if leaked_labels:
        raise DataError("audit pool", f"{len(leaked_labels):,} queries have hidden positives labelled in the pool "
                                      f"(e.g. {leaked_labels[0]!r}).",
                        fix="mine split.apply(collection), not the full collection (hnm_core.audit.audit does)")
    params = params or CurateParams()
    hidden = hidden_rows(frame, pool.collection, split)
    curation = curate(frame, params)
    figures = audit_figures(frame, hidden, curation, n_hidden=split.n_hidden)
    result = sweep(frame, hidden, params, n_hidden=split.n_hidden, grid=grid, target_leak=target_leak,
                   min_coverage=min_coverage, progress=progress)
    return AuditReport(split=split, pool=pool, hidden=hidden, params=params, curation=curation, figures=figures,
                       sweep=result)


def audit(
    collection: Collection,
    values: dict[str, Any] | None = None,
    *,
    hide: float = 0.5,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    teacher: LoadedModel | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    target_leak: float = DEFAULT_TARGET_LEAK,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    progress: Progress = no_progress,
) -> AuditReport:
    """Hide `hide` of each query's positives (seeded by the `seed` setting), mine the rest with `values` (settings
    by name, defaults for the others) and audit the curation at the `curate` settings of `values`.

    Embeddings are cached by text, so an audit of a collection already mined does not encode its corpus again.
    """
    from .pipeline import mine

    values = validate(values or {})
    _check_fractions(target_leak=target_leak, min_coverage=min_coverage)
    if grid is not None:
        _check_grid(grid)
    split = hide_positives(collection, hide=hide, seed=values["seed"])
    if not split.hidden:
        raise DataError(collection.source or collection.name, "no query has two or more positives, so none can be "
                        "hidden.", fix="audit a collection where queries have several labelled positives")
    pool = mine(split.apply(collection), values, cache_dir=cache_dir, encoder=encoder, teacher=teacher,
                progress=progress)
    return audit_pool(pool, split, CurateParams.from_settings(values), grid=grid, target_leak=target_leak,
                      min_coverage=min_coverage, progress=progress)


REPORT_FILES = ("report.json", "sweep.csv", "hidden_positives.csv", "manifest.json")


def save_report(report: AuditReport, out_dir: str | Path, *, overwrite: bool = False,
                extra_manifest: dict[str, Any] | None = None, inputs: Sequence[str | Path] = ()) -> Path:
    """Write report.json, sweep.csv, hidden_positives.csv and manifest.json into `out_dir`, a folder that appears all
    at once. overwrite / inputs: as for `export` (see hnm_core.outdir)."""
    from .outdir import write_output

    meta = report.pool.meta
    manifest = {
        "collection": meta.get("collection"),
        "settings": {**meta.get("settings", {}), **asdict(report.params)},
        "split": {"hide": report.split.hide, "seed": report.split.seed},
        "fingerprints": fingerprints(meta),
        "versions": package_versions(),
        "files": list(REPORT_FILES[:3]),
        **(extra_manifest or {}),
    }
    with write_output(out_dir, "audit", overwrite=overwrite, inputs=inputs) as tmp:
        write_json(tmp / "report.json", report.to_dict())
        report.sweep.table.to_csv(tmp / "sweep.csv", index=False)
        report.split.to_frame().to_csv(tmp / "hidden_positives.csv", index=False)
        write_json(tmp / "manifest.json", manifest)
    return Path(out_dir).expanduser()
