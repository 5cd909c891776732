"""The audit: hide part of each query's labelled positives and mine as if they were unknown (hidden), then count how
many the false-negative rules let through as negatives (leak), over a grid of curate settings (sweep); report curates,
sweeps, recommends and writes it.

May import: every mining stage (it runs them) and export's output folders. Never changes a pool or a curation.
"""

from __future__ import annotations

from .hidden import SplitPool, mine_hidden_split, vet_teacher
from .leak import CAUGHT_LABELS, AuditFigures, HiddenSplit, audit_figures, hidden_rows, hidden_share, hide_positives
from .report import (
           REPORT_FILES,
           AuditReport,
           KnownFalseNegatives,
           audit,
           audit_pool,
           known_false_negatives,
           save_report,
)
from .sweep import DEFAULT_GRID, DEFAULT_MIN_COVERAGE, DEFAULT_TARGET_LEAK, Recommendation, SweepResult, sweep

__all__ = ["AuditReport", "audit", "audit_pool", "save_report", "REPORT_FILES", "KnownFalseNegatives",
           "known_false_negatives", "SplitPool", "mine_hidden_split", "vet_teacher", "HiddenSplit", "hide_positives",
           "hidden_rows", "hidden_share", "CAUGHT_LABELS", "AuditFigures", "audit_figures", "SweepResult", "Recommendation", "sweep",
           "DEFAULT_GRID", "DEFAULT_TARGET_LEAK", "DEFAULT_MIN_COVERAGE"]
