"""Stage 7, export: write a curation as training files (formats), with a manifest of how it was made (manifest),
into an output folder that appears all at once (outdir), one run at a time (outlock).

May import: the ground floor, data, pool, curate. Never mines or scores.
"""

from __future__ import annotations

from .formats import FILE_NAMES, ExportResult, export

__all__ = ["ExportResult", "export", "FILE_NAMES"]
