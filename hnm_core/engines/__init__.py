"""Engines: the whole mining run (pool -> teacher) in one call: on this machine (local), or spread over a Ray
cluster with the same bytes (ray_engine, imported only when asked for).

May import: every mining stage. Never draws anything: the CLI and the studio call it.
"""

from __future__ import annotations

from .local import MiningParams, mine

__all__ = ["MiningParams", "mine"]
