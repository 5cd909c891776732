"""Stage 2, retrieve: the retrievers whose top-K the pool joins, each answering a batch of queries with a
`SearchResult` (result): BM25 over a sparse term matrix (bm25) with its tokenizer (tokenize), a bi-encoder's
embeddings under a faiss index (dense), or embeddings made elsewhere (embedding_files); vectors holds the block-wise
maths they share (cosines, k-means, exact search over files larger than memory).

May import: the ground floor (errors, settings, cache, manifest, progress, storage), data and models. Never imports
a later stage (pool, teacher, curate, export).
"""

from __future__ import annotations

from .bm25 import BM25Index, check_params, idf_weights, length_norm, term_weights
from .dense import DenseIndex, batch_order, embedding_key, encode, encode_batches
from .embedding_files import read_embeddings
from .result import SearchResult
from .tokenize import tokenize, tokenize_many

__all__ = ["SearchResult", "BM25Index", "tokenize", "tokenize_many", "check_params", "idf_weights", "length_norm",
           "term_weights", "DenseIndex", "encode", "encode_batches", "batch_order", "embedding_key", "read_embeddings"]
