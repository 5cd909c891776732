"""Stage 7b, audit: measure how many labelled positives the false-negative rules let through as negatives.

Hide part of each query's labelled positives, mine as if they were unknown, curate, and count: the hidden positives
are real positives the miner did not know about, so every one exported as a negative is a measured leak. The same
figures over a grid of curate settings (a sweep: `curate` only, never a re-mine) show which setting keeps negatives
hard without leaking positives, and a recommendation picks the hardest setting whose leak stays under a target.

    report = audit(collection, {"seed": 0, "hide": 0.5}, cache_dir=...) # mine_hidden_split, then audit_pool
    pool, split = mine_hidden_split(collection, values)                 # hide_positives, then mine the rest
    report = audit_pool(pool, split, params)                            # curate and sweep a pool already mined
    result = sweep(report.pool.frame, report.hidden, params, n_hidden=report.split.n_hidden)

This module curates, sweeps and reports; hidden.py mines the hidden split; the measurement is pure and lives beside
them: leak.py (the hidden split and the figures) and sweep.py (the grid and the recommendation). The package's
`__init__` is the stage's public API.

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

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..curate.overrides import Overrides
from ..curate.rules import CurateParams, Curation, curate
from ..data import Collection
from ..errors import DataError
from ..manifest import fingerprints, package_versions, to_json, write_json
from ..models.loading import LoadedModel
from ..pool import Pool
from ..progress import Progress, no_progress
from ..settings import setting, validate
from ..wording import counted
from .hidden import mine_hidden_split, vet_teacher
from .leak import (
    CAUGHT_LABELS,
    AuditFigures,
    HiddenSplit,
    audit_figures,
    hidden_rows,
    hidden_share,
)
from .sweep import (
    DEFAULT_MIN_COVERAGE,
    DEFAULT_TARGET_LEAK,
    SweepResult,
    check_grid,
    sweep,
)

__all__ = [
    "AuditReport",
    "KnownFalseNegatives",
    "known_false_negatives",
    "audit",
    "audit_pool",
    "REPORT_FILES",
    "save_report",
]


@dataclass(frozen=True)
class KnownFalseNegatives:
    """The candidates a person marked as unlabelled positives (hnm_core.curate.overrides): false negatives known for sure,
    and what the audit's curation does with them when the verdicts are not applied. `marked`: such verdicts;
    `in_pool`: candidate rows of the audit pool they name; `caught`: of those, rows a false-negative rule labels
    (CAUGHT_LABELS); `exported`: rows the rules alone would export as negatives."""

    marked: int
    in_pool: int
    caught: int
    exported: int

    def sentence(self) -> str:
        return (f"Known false negatives (your corrections): {counted(self.marked, 'unlabelled positive')} marked, "
                f"{self.in_pool:,} in the audit pool; the rules label {self.caught:,} of them "
                f"{' / '.join(CAUGHT_LABELS)}, and without the corrections {self.exported:,} would be exported as "
                "negatives.")


def known_false_negatives(frame: pd.DataFrame, curation: Curation, overrides: Overrides) -> KnownFalseNegatives:
    """How `curation` (computed without `overrides`) treats the candidates `overrides` marks unlabelled positives."""
    codes, uniques = pd.factorize(frame["query_id"])
    marked = (overrides.row_verdicts(frame, codes, uniques) == 1) & ~frame["is_positive"].to_numpy(dtype=bool)
    labels = np.asarray(curation.labels, dtype=object)
    return KnownFalseNegatives(marked=overrides.count("unlabelled_positive"), in_pool=int(marked.sum()),
                               caught=int(np.isin(labels[marked], CAUGHT_LABELS).sum()),
                               exported=int(curation.selected[marked].sum()))


@dataclass(frozen=True, eq=False)
class AuditReport:
    """An audit: the split, the audit pool (mined with the visible positives) and its `hidden` row mask, the
    curation at `params` with its figures, and the sweep. `to_dict()` is the JSON report. `teacher` is what
    `vet_teacher` says of the teacher that scored the pool; `known` what the curation does with a person's
    unlabelled positives, when an overrides file was given."""

    split: HiddenSplit
    pool: Pool
    hidden: np.ndarray
    params: CurateParams
    curation: Curation
    figures: AuditFigures
    sweep: SweepResult
    teacher: dict[str, Any]
    known: KnownFalseNegatives | None = None

    def to_dict(self) -> dict[str, Any]:
        rec = self.sweep.recommendation
        return {
            "collection": self.pool.meta.get("collection", {"name": self.pool.collection.name}),
            "split": {"hide": self.split.hide, "seed": self.split.seed, "audited_queries": self.split.n_audited,
                      "hidden_positives": self.split.n_hidden},
            "teacher": self.teacher,
            "settings": {**self.pool.meta.get("settings", {}), **asdict(self.params)},
            **({"margin_ref_auto": self.curation.auto_record} if self.curation.auto_record is not None else {}),
            "figures": asdict(self.figures),
            "recommendation": {"settings": rec.settings, "met_target": rec.met_target, "reason": rec.reason,
                               "figures": asdict(rec.figures)},
            "sweep": {"axes": {k: list(v) for k, v in self.sweep.axes.items()}, "points": len(self.sweep.table),
                      "target_leak": self.sweep.target_leak, "min_coverage": self.sweep.min_coverage},
            "short_queries": [q._asdict() for q in self.curation.short_queries],
            "known_false_negatives": asdict(self.known) if self.known is not None else None,
        }

    def to_json(self) -> str:
        """`to_dict()` as JSON text (rates without a denominator are null)."""
        return to_json(self.to_dict()).decode()

    def sentences(self) -> list[str]:
        rec = self.sweep.recommendation
        flags = " ".join(f"{setting(n).flag} {'off' if v is None else v}" for n, v in rec.settings.items())
        return [
            f"Hid {counted(self.split.n_hidden, 'positive')} of {counted(self.split.n_audited, 'query', 'queries')} "
            f"(hide {self.split.hide:g}, seed {self.split.seed}); mined "
            f"{counted(self.figures.n_queries, 'query', 'queries')} with the rest.",
            f"{self.teacher['summary'][0].upper()}{self.teacher['summary'][1:]}.",
            *self.figures.sentences(),
            *([self.known.sentence()] if self.known is not None else []),
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
    overrides: Overrides | None = None,
    progress: Progress = no_progress,
) -> AuditReport:
    """Audit a pool already mined (and teacher-scored) from `split.apply(collection)`: curate at `params` (default
    settings when None) and sweep, without mining again. The app keeps such a pool and re-sweeps it at will.
    `overrides`: a person's verdicts; their unlabelled positives are counted as known false negatives (`known`)."""
    frame = pool.frame
    leaked_labels = [q for q, docs in split.hidden.items() if set(docs) & set(pool.collection.positives.get(q, ()))]
    if leaked_labels:
        raise DataError("audit pool", f"{len(leaked_labels):,} queries have hidden positives labelled in the pool "
                                      f"(e.g. {leaked_labels[0]!r}).",
                        fix="mine split.apply(collection), not the full collection (hnm_core.audit.report.audit does)")
    meta = pool.meta.get("teacher") or {}
    settings = pool.meta.get("settings", {})
    kind, name = meta.get("kind", settings.get("teacher")), meta.get("name", settings.get("teacher_model"))
    path = meta.get("path", name)
    members = [m["member"] for m in meta.get("members", ())] or list(settings.get("teacher_members", ()))
    if kind == "ensemble":  # vetted by its cross-encoder member
        name = path = next((m.get("path") for m in meta.get("members", ()) if m["member"] == "cross-encoder"),
                           settings.get("teacher_model"))
    teacher = vet_teacher(kind, name, path, pool.collection, split, members=members,
                          miner=(pool.meta.get("model") or {}).get("name", settings.get("model")))
    trained = meta.get("trained_by_audit")
    if trained:
        teacher = {**teacher, "trained_by_audit": trained, "summary": (
            f"{teacher['summary']}; this audit trained it into {trained['folder']} on the "
            f"{counted(trained['visible_positives'], 'visible positive')} of "
            f"{counted(trained['queries'], 'query', 'queries')} only, and never showed it the "
            f"{counted(trained['hidden_positives'], 'hidden positive')}")}
    params = params or CurateParams()
    hidden = hidden_rows(frame, pool.collection, split)
    curation = curate(frame, params, auto_share=hidden_share(frame, hidden))
    figures = audit_figures(frame, hidden, curation, n_hidden=split.n_hidden)
    result = sweep(frame, hidden, params, n_hidden=split.n_hidden, grid=grid, target_leak=target_leak,
                   min_coverage=min_coverage, progress=progress)
    known = known_false_negatives(frame, curation, overrides) if overrides is not None else None
    return AuditReport(split=split, pool=pool, hidden=hidden, params=params, curation=curation, figures=figures,
                       sweep=result, teacher=teacher, known=known)


def audit(
    collection: Collection,
    values: dict[str, Any] | None = None,
    *,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    teacher: LoadedModel | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    train_teacher_dir: str | Path | None = None,
    overrides: Overrides | None = None,
    progress: Progress = no_progress,
) -> AuditReport:
    """Hide the `hide` setting's share of each query's positives (seeded by `seed`), mine the rest with `values`
    (settings by name, defaults for the others), audit the curation at the `curate` settings of `values` and
    recommend under its `target_leak` and `min_coverage`. `overrides`: see `audit_pool`.

    Embeddings are cached by text, so an audit of a collection already mined does not encode its corpus again.
    `train_teacher_dir`: train the cross-encoder teacher on the visible positives only and audit with it (see
    mine_hidden_split).
    """
    values = validate(values or {})
    if grid is not None:
        check_grid(grid)
    pool, split = mine_hidden_split(collection, values, cache_dir=cache_dir, encoder=encoder, teacher=teacher,
                                    train_teacher_dir=train_teacher_dir, progress=progress)
    return audit_pool(pool, split, CurateParams.from_settings(values), grid=grid, target_leak=values["target_leak"],
                      min_coverage=values["min_coverage"], overrides=overrides, progress=progress)


REPORT_FILES = ("report.json", "sweep.csv", "hidden_positives.csv", "manifest.json")


def save_report(report: AuditReport, out_dir: str | Path, *, overwrite: bool = False,
                extra_manifest: dict[str, Any] | None = None, inputs: Sequence[str | Path] = ()) -> Path:
    """Write report.json, sweep.csv, hidden_positives.csv and manifest.json into `out_dir`, a folder that appears all
    at once. overwrite / inputs: as for `export` (see hnm_core.outputs.folder)."""
    from ..outputs.folder import write_output

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
