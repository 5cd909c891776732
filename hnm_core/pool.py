"""Stage 3, pool: the union of every retriever's top-K per query, minus its positives, with provenance.

The table's schema is documented in docs/ARCHITECTURE.md; it is the interface to curation, the app and export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .data import Collection

__all__ = ["Pool", "PoolStats", "POOL_COLUMNS"]

POOL_COLUMNS: dict[str, str] = {
    "query_id": "string",
    "doc_id": "string",
    "is_positive": "bool",
    "in_bm25": "bool",
    "bm25_rank": "int32",
    "bm25_score": "float32",
    "in_dense": "bool",
    "dense_rank": "int32",
    "dense_score": "float32",
    "fused_rank": "int32",
    "pos_sim_max": "float32",
    "cluster": "int32",
    "teacher_raw": "float32",
    "teacher_score": "float32",
}


@dataclass(frozen=True)
class PoolStats:
    """What building the pool kept and dropped, as numbers and as sentences for the UI."""

    n_queries: int
    n_candidates: int
    n_positive_rows: int
    dropped_positive_ids: int  # retrieved documents that are labelled positives (by id)
    dropped_positive_duplicates: int  # retrieved documents whose normalised text equals a positive's
    found_by: dict[str, int] = field(default_factory=dict)  # "bm25", "dense", "bm25+dense" -> candidates

    def sentences(self) -> list[str]:
        out = [f"{self.n_candidates:,} candidates for {self.n_queries:,} queries ({self.n_positive_rows:,} positives kept for scoring)."]
        for key, n in self.found_by.items():
            out.append(f"{n:,} candidates found by {key.replace('+', ' and ')} only" if "+" not in key
                       else f"{n:,} candidates found by both BM25 and dense")
        out.append(f"Removed {self.dropped_positive_ids:,} retrieved labelled positives and "
                   f"{self.dropped_positive_duplicates:,} duplicates of a positive under another id.")
        return out


@dataclass(frozen=True)
class Pool:
    """A candidate pool in memory.

    `frame` follows POOL_COLUMNS. `doc_embeddings` (float16/float32, aligned with `collection.doc_ids`, L2-normalised)
    and `query_embeddings` (aligned with `collection.query_ids`) are present when dense retrieval ran.
    `meta` holds the settings used, model and teacher fingerprints, and versions; it becomes the manifest.
    """

    frame: pd.DataFrame
    collection: Collection
    stats: PoolStats
    meta: dict[str, Any] = field(default_factory=dict)
    doc_embeddings: np.ndarray | None = None
    query_embeddings: np.ndarray | None = None
