"""Stage 3, pool: the union of every retriever's top-K per query, minus its positives, with provenance (build),
saved and read back (files), and its 2-D map for the studio's Explore page (project).

May import: the ground floor, data and retrieve. Never scores with a teacher or labels a row.
"""

from __future__ import annotations

from .build import Pool, PoolParams, PoolStats, build_pool, load_pool, save_pool
from .project import project_2d

__all__ = ["Pool", "PoolParams", "PoolStats", "build_pool", "save_pool", "load_pool", "project_2d"]
