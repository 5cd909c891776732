"""Stage 2, retrieve: the retrievers whose top-K the pool joins, each answering a batch of queries with a
`SearchResult`: BM25 over a sparse term matrix (bm25), a bi-encoder's embeddings under a faiss index (dense), or
embeddings made elsewhere (embedding_files); vectors holds the block-wise maths they share (cosines, k-means,
exact search over files larger than memory).

May import: the ground floor (errors, settings, cache, progress, storage) and data. Never imports a later stage.
"""

from __future__ import annotations

from .bm25 import (
    BM25Index,
    check_params,
    idf_weights,
    length_norm,
    term_weights,
    tokenize,
    tokenize_many,
)
from .dense import DenseIndex, batch_order, embedding_key, encode, encode_batches
from .embedding_files import read_embeddings
from .result import SearchResult

__all__ = ["SearchResult", "BM25Index", "tokenize", "tokenize_many", "check_params", "idf_weights", "length_norm", "term_weights", "DenseIndex", "encode", "encode_batches", "batch_order", "embedding_key", "read_embeddings"]
