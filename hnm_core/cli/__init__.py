"""`hnm`, the command line over the same pipeline as the studio (main), and `hnm studio`, which starts the studio
(studio).

May import anything in hnm_core. Nothing in hnm_core imports it.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["main", "build_parser"]
