"""Stage 7, export: write a curation as training files in every format a trainer reads (formats), with a manifest of
how it was made, into an output folder that appears all at once (hnm_core.outputs).

May import: the ground floor (outputs included), data, pool and curate. Never mines, scores or trains.
"""

from __future__ import annotations

from .formats import FILE_NAMES, ExportResult, export

__all__ = ["ExportResult", "export", "FILE_NAMES"]
