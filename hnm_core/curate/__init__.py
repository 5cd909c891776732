"""Stage 5, curate: label every pool row by the false-negative rules and sample the negatives (rules), why each
row got its label (reasons), what a curation exports in numbers (selection), and a person's verdicts (overrides).

`curate` is a pure function of the pool table and its settings: no disk, no model. May import: the ground floor
and data. Never imports retrieve, teacher or the engines.
"""

from __future__ import annotations

from .margins import margin_thresholds
from .overrides import Override, Overrides, Verdict, add_override, read_overrides
from .reasons import reasons
from .rules import LABELS, CurateParams, Curation, curate

__all__ = ["LABELS", "CurateParams", "Curation", "curate", "margin_thresholds", "reasons", "Override", "Overrides", "Verdict", "read_overrides", "add_override"]
