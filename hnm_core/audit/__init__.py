"""The audit: hide part of each query's labelled positives, mine as if they were unknown, and count how many the
false-negative rules let through as negatives (leak), over a grid of curate settings (sweep); report writes it.

May import: every mining stage (it runs them) and export's output folders. Never changes a pool or a curation.
"""

from __future__ import annotations

from .leak import AuditFigures, audit_figures, hide_positives
from .report import AuditReport, audit, audit_pool, save_report
from .sweep import Recommendation, SweepResult, sweep

__all__ = ["AuditReport", "audit", "audit_pool", "save_report", "hide_positives", "AuditFigures", "audit_figures", "SweepResult", "Recommendation", "sweep"]
