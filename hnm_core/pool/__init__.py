"""Stage 3, pool: the union of every retriever's top-K per query, minus its positives, with provenance: its settings
and figures (params), the retrieval each query block runs (build), the rows fused from every source's hits (rows),
the folder it is saved to and read from (files), and its 2-D map for the studio's Explore page (project).

May import: the ground floor, data and retrieve. Never scores with a teacher or labels a row.
"""

from __future__ import annotations

from .build import build_pool
from .files import load_pool, save_pool
from .params import Pool, PoolParams, PoolStats
from .project import project_2d

__all__ = ["Pool", "PoolParams", "PoolStats", "build_pool", "save_pool", "load_pool", "project_2d"]
