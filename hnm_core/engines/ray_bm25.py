"""BM25 sharded by documents over Ray actors, with the single index's scores: each shard tokenizes its documents
once, reports its document frequencies and lengths, and builds its term weights with the global idf and average
length (retrieve.bm25's functions); the driver merges each shard's top-k by (score, lower document index), the order
of the local search."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from ..retrieve.result import SearchResult
from ..retrieve.vectors import merge_top_k
from .ray_cluster import cluster_size, even_spans, ray_module

__all__ = ["ShardedBM25", "merge_shards"]


def merge_shards(parts: Sequence[SearchResult], k: int) -> SearchResult:
    """The global top-k from each shard's top-k (indices already global): by score, then lower document index, as
    the local search orders them (retrieve.vectors.merge_top_k)."""
    scores, indices = merge_top_k(np.concatenate([p.scores for p in parts], axis=1),
                                  np.concatenate([p.indices for p in parts], axis=1), k)
    return SearchResult(indices, scores)


class _BM25Shard:
    """A contiguous run of documents: tokenized once, weighted with the global statistics, then searched."""

    def __init__(self, texts: Sequence[str], stopwords: bool) -> None:
        from ..retrieve.tokenize import tokenize

        self.tokens = [tokenize(t, stopwords=stopwords) for t in texts]
        self.index: Any = None

    def statistics(self) -> tuple[list[str], dict[str, int], np.ndarray]:
        """Terms in first-seen order, their document frequencies, and the documents' lengths."""
        doc_freq: dict[str, int] = {}
        for tokens in self.tokens:
            for token in dict.fromkeys(tokens):
                doc_freq[token] = doc_freq.get(token, 0) + 1
        return list(doc_freq), doc_freq, np.fromiter(map(len, self.tokens), np.int64, len(self.tokens))

    def build(self, vocabulary: dict[str, int], idf: np.ndarray, avgdl: float, k1: float, b: float,
              epsilon: float, stopwords: bool) -> None:
        """The shard's term weights, computed as BM25Index.build does but with the global idf and avgdl."""
        import scipy.sparse as sp

        from ..retrieve.bm25 import BM25Index, length_norm, term_weights

        n_docs = len(self.tokens)
        doc_lengths = np.fromiter(map(len, self.tokens), np.int64, n_docs)
        term_ids = np.fromiter((vocabulary[t] for tokens in self.tokens for t in tokens), np.int64,
                               int(doc_lengths.sum()))
        rows = np.repeat(np.arange(n_docs, dtype=np.int64), doc_lengths)
        tf = sp.coo_matrix((np.ones(len(term_ids)), (rows, term_ids)), shape=(n_docs, len(vocabulary))).tocsr()
        doc_of_entry = np.repeat(np.arange(n_docs, dtype=np.int64), np.diff(tf.indptr))
        tf.data = term_weights(tf.data, idf[tf.indices], length_norm(doc_lengths, avgdl, k1, b)[doc_of_entry], k1)
        self.tokens = []
        self.index = BM25Index(term_doc=tf.T.tocsr(), vocabulary=vocabulary, idf=idf, doc_lengths=doc_lengths,
                               avgdl=avgdl, k1=k1, b=b, epsilon=epsilon, stopwords=stopwords)

    def search(self, queries: Sequence[str], k: int, offset: int) -> SearchResult:
        result = self.index.search(queries, k)
        return SearchResult(result.indices + offset, result.scores)

    def score_pairs(self, queries: Sequence[str], query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        return self.index.score_pairs(queries, query_idx, doc_idx)


@dataclasses.dataclass(frozen=True)
class ShardedBM25:
    """The BM25 shards of a collection: actors and the first document of each."""

    shards: list[Any]
    starts: list[int]

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float, b: float, stopwords: bool, epsilon: float = 0.25) -> ShardedBM25:
        from ..retrieve.bm25 import check_params, idf_weights

        check_params(k1, b, epsilon)
        ray = ray_module()
        cpus, _ = cluster_size()
        spans = even_spans(len(texts), cpus)
        # Shards reserve no CPU: they live through the whole run and work only when asked, so they must not starve the
        # encoding actors and the partition tasks of the CPUs those wait for.
        actor = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_BM25Shard)
        shards = [actor.remote(texts[a:b_], stopwords) for a, b_ in spans]
        stats = ray.get([s.statistics.remote() for s in shards])
        # Terms numbered in corpus first-seen order and idf floored over that order, as BM25Index.build does.
        vocabulary = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(terms for terms, _, _ in stats)))}
        doc_freq = np.zeros(len(vocabulary))
        for _, counts, _ in stats:
            doc_freq[[vocabulary[t] for t in counts]] += list(counts.values())
        n_docs = len(texts)
        idf = idf_weights(doc_freq, n_docs, epsilon)
        lengths = np.concatenate([length for _, _, length in stats]) if stats else np.empty(0, np.int64)
        avgdl = float(lengths.sum() / n_docs) if n_docs else 0.0
        vocabulary_ref, idf_ref = ray.put(vocabulary), ray.put(idf)
        ray.get([s.build.remote(vocabulary_ref, idf_ref, avgdl, k1, b, epsilon, stopwords) for s in shards])
        return cls(shards, [a for a, _ in spans])

    def search(self, queries: Sequence[str], k: int) -> SearchResult:
        ray = ray_module()
        queries_ref = ray.put(list(queries))
        return merge_shards(ray.get([s.search.remote(queries_ref, k, start) for s, start in zip(self.shards, self.starts)]),
                      k)

    def score_pairs(self, queries: Sequence[str], query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        """Scores of (query, document) pairs, each pair asked of the shard that holds its document."""
        ray = ray_module()
        shard = np.searchsorted(self.starts, doc_idx, side="right") - 1
        out = np.zeros(len(doc_idx))
        asked = []
        for s, start in enumerate(self.starts):
            rows = np.flatnonzero(shard == s)
            if len(rows):
                asked.append((rows, self.shards[s].score_pairs.remote(queries, query_idx[rows], doc_idx[rows] - start)))
        for rows, ref in asked:
            out[rows] = ray.get(ref)
        return out
