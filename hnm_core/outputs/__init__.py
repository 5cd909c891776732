"""Output folders, the ground every writer stands on: each folder hnm writes (an export, a pool, an audit report, a
trained model, a proof) is checked before any work, written into a hidden sibling and put in place whole (folder),
marked as hnm's so that only hnm's files are ever replaced (marker), and written by one run at a time (lock).

May import: the other ground-floor modules (errors, manifest, storage). Never imports a stage.
"""

from __future__ import annotations

from .folder import check_out, finish, new_folder, refuse_inputs, write_output
from .lock import claim
from .marker import MARKER, Marker, read_marker

__all__ = ["check_out", "write_output", "new_folder", "finish", "refuse_inputs", "claim", "MARKER", "Marker",
           "read_marker"]
