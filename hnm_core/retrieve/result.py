"""Stage 2, retrieve: what every retriever returns. bm25.py (lexical) and dense.py (embeddings) both answer a batch
of queries with a `SearchResult`, so the pool builder treats them alike."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SearchResult"]


class SearchResult(NamedTuple):
    """Top-k documents per query: row i holds query i's best documents, best first (ties: lower index first)."""

    indices: np.ndarray  # int64, shape (n_queries, k): positions in the indexed texts (-1: an empty slot)
    scores: np.ndarray  # shape (n_queries, k): the retriever's scores, descending along each row
