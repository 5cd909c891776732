"""The pool: its settings (PoolParams), its figures (PoolStats), and the table with the data it was mined from
(Pool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..data import Collection
from ..settings import StageParams
from ..wording import counted

if TYPE_CHECKING:
    pass

__all__ = ["Pool", "PoolParams", "PoolStats"]


@dataclass(frozen=True)
class PoolParams(StageParams):
    """The `pool`-stage settings plus the seed (k-means, an approximate index); see hnm_core/settings.py for each
    one's help. Build it with `PoolParams.from_settings(values)`: the fields have no defaults but the table's."""

    sources: tuple[Literal["bm25", "dense"], ...]
    top_k: int
    model: str
    precision: Literal["auto", "fp32", "bf16"]
    max_seq_length: int
    query_prompt: str
    doc_prompt: str
    index: Literal["auto", "exact", "hnsw", "ivf"]
    exact_max_docs: int
    batch_size: int
    stopwords: bool
    bm25_k1: float
    bm25_b: float
    n_clusters: int
    seed: int


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
        out = [f"{counted(self.n_candidates, 'candidate')} for {counted(self.n_queries, 'query', 'queries')} "
               f"({counted(self.n_positive_rows, 'labelled positive')} kept for scoring)."]
        names = {"bm25": "BM25 only", "dense": "dense only", "bm25+dense": "both BM25 and dense"}
        out += [f"{n:,} found by {names.get(key, key)}." for key, n in sorted(self.found_by.items())]
        out.append(f"Left out {counted(self.dropped_positive_ids, 'retrieved labelled positive')} and "
                   f"{counted(self.dropped_positive_duplicates, 'duplicate')} of a positive under another id.")
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
