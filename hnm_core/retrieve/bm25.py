"""Stage 2, retrieve (lexical): Okapi BM25 over a sparse document-term matrix.

Tokens are hnm_core.retrieve.tokenize's, the same for documents and queries (no stemming). Scores equal
`rank_bm25.BM25Okapi(corpus_tokens, k1, b, epsilon).get_scores(query_tokens)` on the same tokens: idf = log((N - n + 0.5) / (n + 0.5)), where a negative idf (a term in more than half of the documents) is
replaced by epsilon * the mean idf over the vocabulary; a query term that occurs twice counts twice; query terms not
in the corpus add nothing. Where rank_bm25 divides 0 by 0 (empty documents with b=1, any document with k1=0) the
score here is 0, so no score is ever NaN.

Speed: every (document, term) weight is computed once at build time into a sparse term x document matrix; a batch of
queries is a sparse query x term count matrix, and scoring the batch is one sparse product.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import count, repeat

import numpy as np
import scipy.sparse as sp

from ..errors import SettingsError
from ..progress import Progress, no_progress
from ..settings import setting
from .result import SearchResult
from .tokenize import SEP, english_stopwords, joined_tokens, tokenize_many

__all__ = ["BM25Index", "check_params", "idf_weights", "length_norm",
           "term_weights"]


# Queries are scored a chunk at a time so that one chunk's score block has at most this many cells, even when every
# document matches every query (about 48 MB as a sparse float64 block, 32 MB as the dense copy score_pairs makes).
_CHUNK_CELLS = 1 << 22
# Documents tokenized at a time while building (and between two progress reports): the block's joined text and
# token list are the build's only per-token Python objects.
_BUILD_STEP = 50_000


def check_params(k1: float, b: float, epsilon: float) -> None:
    """Refuse a k1, b or epsilon no BM25 can use, with the usual values in the message."""
    if not (math.isfinite(k1) and k1 >= 0):
        raise SettingsError(f"bm25 k1 must be a finite number >= 0, got {k1!r}; 1.2 to 2.0 is usual (default 1.5)")
    if not (math.isfinite(b) and 0 <= b <= 1):
        raise SettingsError(f"bm25 b must be between 0 and 1, got {b!r}; 0.75 is the usual default")
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise SettingsError(f"bm25 epsilon must be a finite number >= 0, got {epsilon!r}; the default is 0.25")


def idf_weights(doc_freq: np.ndarray, n_docs: int, epsilon: float) -> np.ndarray:
    """Each term's idf from its document frequency (float64): log((N - n + 0.5) / (n + 0.5)), a negative one (a term
    in over half the documents) replaced by epsilon * the mean idf over the vocabulary, as rank_bm25 does."""
    idf = np.log(n_docs - doc_freq + 0.5) - np.log(doc_freq + 0.5)
    if len(idf):
        idf[idf < 0] = epsilon * (idf.sum() / len(idf))
    return idf


def length_norm(doc_lengths: np.ndarray, avgdl: float, k1: float, b: float) -> np.ndarray:
    """Each document's k1 * (1 - b + b * length / avgdl). avgdl is 0 only when every document is empty; they then
    have no entries to weigh, so any divisor does."""
    return k1 * (1 - b + b * doc_lengths / (avgdl or 1.0))


def term_weights(freq: np.ndarray, idf: np.ndarray, norm: np.ndarray, k1: float) -> np.ndarray:
    """BM25 weights of (term, document) entries from their term frequency, the term's idf and the document's norm,
    in rank_bm25's operation order (tf * (k1 + 1) / (tf + norm), then * idf), so they agree to the last bit."""
    return idf * (freq * (k1 + 1) / (freq + norm))


class BM25Index:
    """An Okapi BM25 index over a fixed list of texts. Build it with `BM25Index.build`.

    Attributes: `k1`, `b`, `epsilon`, `stopwords` (as built), `vocabulary` (token -> column), `idf` (float64, per
    column, after the epsilon floor), `doc_lengths` (int64 tokens per document), `avgdl`.
    """

    def __init__(
        self,
        *,
        term_doc: sp.csr_matrix,
        vocabulary: dict[str, int],
        idf: np.ndarray,
        doc_lengths: np.ndarray,
        avgdl: float,
        k1: float,
        b: float,
        epsilon: float,
        stopwords: bool,
    ) -> None:
        self._term_doc = term_doc  # (n_terms, n_docs) BM25 weight of each term in each document
        self.vocabulary = vocabulary
        self.idf = idf
        self.doc_lengths = doc_lengths
        self.avgdl = avgdl
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.stopwords = stopwords

    @property
    def n_docs(self) -> int:
        return self._term_doc.shape[1]

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        k1: float = setting("bm25_k1").default,
        b: float = setting("bm25_b").default,
        epsilon: float = 0.25,
        stopwords: bool = setting("stopwords").default,
        progress: Progress | None = None,
    ) -> BM25Index:
        """Tokenize `texts` and precompute every BM25 term weight.

        k1: term-frequency saturation; higher lets repeated terms keep adding score (0 = presence only).
        b: length normalisation; 1 divides term frequency fully by relative document length, 0 ignores length.
        epsilon: negative idfs (terms in over half the documents) become epsilon * mean idf, as in rank_bm25.
        stopwords: drop scikit-learn's English stopwords from documents and, later, from queries.
        progress: told ("bm25 index", documents tokenized, total).
        """
        check_params(k1, b, epsilon)
        report = progress or no_progress
        n_docs = len(texts)
        report("bm25 index", 0, n_docs)
        # Working ids: the separator and stopwords get negative ids, so one lookup per token finds document
        # boundaries, dropped words and columns; a new token takes the next column as it is first seen (in corpus
        # order: deterministic), all in C. The specials leave the vocabulary once it is complete.
        specials = {SEP: -1, **({word: -2 for word in english_stopwords()} if stopwords else {})}
        working: defaultdict[str, int] = defaultdict(count().__next__, specials)
        blocks: list[sp.csr_matrix] = []  # term counts per block of documents, columns as numbered so far
        doc_lengths = np.zeros(n_docs, dtype=np.int64)
        for start in range(0, n_docs, _BUILD_STEP):
            block_texts = texts[start : start + _BUILD_STEP]
            tokens = joined_tokens(block_texts)
            ids = np.fromiter(map(working.__getitem__, tokens), dtype=np.int32, count=len(tokens))
            n_terms = len(working) - len(specials)
            del tokens
            rows = np.cumsum(ids == -1, dtype=np.int32)
            keep = ids >= 0
            ids, rows = ids[keep], rows[keep]
            lengths = np.bincount(rows, minlength=len(block_texts))
            doc_lengths[start : start + len(lengths)] = lengths
            # COO -> CSR sums the duplicate (doc, term) entries: the result holds term frequencies.
            blocks.append(sp.coo_matrix((np.ones(len(ids), dtype=np.float32), (rows, ids)),
                                        shape=(len(lengths), n_terms)).tocsr())
            del rows, ids, keep
            report("bm25 index", min(start + _BUILD_STEP, n_docs), n_docs)
        vocabulary = {token: column for token, column in working.items() if column >= 0}
        del working
        n_terms = len(vocabulary)
        # COO -> CSR also merged each document's repeats into one entry: entries per column are document counts.
        doc_count = np.zeros(n_terms, dtype=np.int64)
        for block in blocks:
            doc_count[: block.shape[1]] += np.bincount(block.indices, minlength=block.shape[1])
        idf = idf_weights(doc_count.astype(np.float64), n_docs, epsilon)
        avgdl = float(doc_lengths.sum() / n_docs) if n_docs else 0.0
        norm = length_norm(doc_lengths, avgdl, k1, b)
        term_doc = _term_major(blocks, doc_count, norm, idf, k1, n_docs)
        return cls(
            term_doc=term_doc,
            vocabulary=vocabulary,
            idf=idf,
            doc_lengths=doc_lengths,
            avgdl=avgdl,
            k1=k1,
            b=b,
            epsilon=epsilon,
            stopwords=stopwords,
        )

    def _query_matrix(self, queries: Iterable[str]) -> sp.csr_matrix:
        """Sparse (n_queries, n_terms) query matrix; unknown tokens are dropped.

        A repeated token is stored twice; the sparse product sums both, so it adds its weight twice, as in rank_bm25.
        """
        tokens, lengths = tokenize_many(list(queries), stopwords=self.stopwords)
        columns = np.fromiter(map(self.vocabulary.get, tokens, repeat(-1)), dtype=np.int64, count=len(tokens))
        known = columns >= 0
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.bincount(np.repeat(np.arange(len(lengths)), lengths)[known], minlength=len(lengths)),
                  out=indptr[1:])
        columns = columns[known]
        n_queries = len(lengths)
        return sp.csr_matrix(
            (np.ones(len(columns), dtype=np.float64), np.asarray(columns, dtype=np.int64), np.asarray(indptr)),
            shape=(n_queries, len(self.vocabulary)),
        )

    def _blocks(
        self, queries: Sequence[str], stage: str, progress: Progress | None
    ) -> Iterable[tuple[int, sp.csr_matrix]]:
        """Yield (first query position, sparse float64 scores of shape (chunk, n_docs)) over all queries.

        A chunk has at most _CHUNK_CELLS cells, so even a block where every document matches (or its dense copy)
        stays bounded in memory.
        """
        report = progress or no_progress
        n_queries = len(queries)
        step = max(1, _CHUNK_CELLS // max(1, self.n_docs))
        report(stage, 0, n_queries)
        for start in range(0, n_queries, step):
            yield start, self._query_matrix(queries[start : start + step]) @ self._term_doc
            report(stage, min(start + step, n_queries), n_queries)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of `query` against every document (float64, shape (n_docs,)), as rank_bm25's get_scores."""
        return (self._query_matrix([query]) @ self._term_doc).toarray()[0]

    def score_matrix(self, queries: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        """Scores of every query against every document: float32, shape (n_queries, n_docs).

        The result itself is n_queries * n_docs * 4 bytes; for large corpora use `score_pairs` or `search`.
        progress: told ("bm25 scores", queries done, total).
        """
        out = np.empty((len(queries), self.n_docs), dtype=np.float32)
        for start, block in self._blocks(queries, "bm25 scores", progress):
            out[start : start + block.shape[0]] = block.toarray()
        return out

    def score_pairs(
        self,
        queries: Sequence[str],
        query_idx: np.ndarray,
        doc_idx: np.ndarray,
        *,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Exact scores of given (query, document) pairs: float64, shape (n_pairs,).

        Pair p is (queries[query_idx[p]], document doc_idx[p]). This is how a document found by another retriever
        gets its BM25 score; memory stays bounded however many queries there are.
        progress: told ("bm25 pair scores", queries done, total).
        """
        query_idx = np.asarray(query_idx, dtype=np.int64)
        doc_idx = np.asarray(doc_idx, dtype=np.int64)
        if query_idx.shape != doc_idx.shape or query_idx.ndim != 1:
            raise ValueError(f"query_idx and doc_idx must be 1-d and the same length, got {query_idx.shape} and "
                             f"{doc_idx.shape}; pass one entry per (query, document) pair")
        if len(query_idx) and not (0 <= query_idx.min() and query_idx.max() < len(queries)):
            raise IndexError(f"query_idx must lie in [0, {len(queries)}); pass positions into `queries`")
        if len(doc_idx) and not (0 <= doc_idx.min() and doc_idx.max() < self.n_docs):
            raise IndexError(f"doc_idx must lie in [0, {self.n_docs}); pass positions into the indexed texts")
        out = np.zeros(len(query_idx), dtype=np.float64)
        # Visit pairs sorted by query so each chunk of score rows is computed once.
        order = np.argsort(query_idx, kind="stable")
        bounds = np.searchsorted(query_idx[order], np.arange(len(queries) + 1))
        for start, block in self._blocks(queries, "bm25 pair scores", progress):
            picked = order[bounds[start] : bounds[start + block.shape[0]]]
            out[picked] = block.toarray()[query_idx[picked] - start, doc_idx[picked]]
        return out

    def search(self, queries: Sequence[str], k: int, *, progress: Progress | None = None) -> SearchResult:
        """The k best documents for each query (k is clipped to the number of documents).

        Rows are sorted by score, highest first; equal scores are ordered by lower document index, so results are
        deterministic (documents with score 0 fill the tail when fewer than k documents share a term with the query).
        progress: told ("bm25 search", queries done, total).
        """
        if k < 0:
            raise SettingsError(f"k must be >= 0, got {k}; ask for the number of documents wanted per query")
        k = min(k, self.n_docs)
        indices = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float64)
        if k == 0:
            return SearchResult(indices, scores)
        for start, block in self._blocks(queries, "bm25 search", progress):
            pointers, columns, values = block.indptr, block.indices, block.data
            for row in range(block.shape[0]):
                span = slice(pointers[row], pointers[row + 1])
                indices[start + row], scores[start + row] = _row_top_k(columns[span], values[span], self.n_docs, k)
        return SearchResult(indices, scores)


def _row_top_k(columns: np.ndarray, values: np.ndarray, n_docs: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k (best first, ties to the lower index) of one sparse score row: documents not stored score 0.

    Works on the stored entries only (a query rarely matches most of a large corpus), never on a dense row.
    """
    if len(values) >= k:
        top = np.argpartition(values, len(values) - k)[len(values) - k :]
        kth = values[top[0]]  # argpartition puts the k-th largest score first in this slice
        if kth > 0:  # at least k positive scores: the answer is among the stored entries
            if np.count_nonzero(values == kth) > np.count_nonzero(values[top] == kth):
                # argpartition kept an arbitrary subset of the entries tied at the k-th score; keep the lowest indices.
                above = np.flatnonzero(values > kth)
                tied = np.flatnonzero(values == kth)
                top = np.concatenate((above, tied[np.argsort(columns[tied], kind="stable")[: k - len(above)]]))
            columns, values = columns[top], values[top]
            order = np.lexsort((columns, -values))
            return columns[order], values[order]
    # Fewer than k positive scores: the score-0 documents come next by index (absent or stored 0), then any
    # negative scores (possible when epsilon * mean idf < 0).
    nonzero = values != 0
    candidates = np.arange(min(n_docs, k - np.count_nonzero(values > 0) + np.count_nonzero(nonzero)))
    taken = np.zeros(len(candidates), dtype=bool)
    stored = columns[nonzero]
    taken[stored[stored < len(candidates)]] = True
    zeros = candidates[~taken]
    columns = np.concatenate((columns[nonzero], zeros))
    values = np.concatenate((values[nonzero], np.zeros(len(zeros))))
    order = np.lexsort((columns, -values))[:k]
    return columns[order], values[order]


def _term_major(blocks: list[sp.csr_matrix], doc_count: np.ndarray, norm: np.ndarray, idf: np.ndarray, k1: float,
                n_docs: int) -> sp.csr_matrix:
    """The (n_terms, n_docs) BM25 weight matrix from per-block document x term counts (`doc_count`: documents per
    term), filled block by block into its final arrays: memory holds the result and one block's copy, never a
    whole-corpus transpose. Each term's documents come out in increasing order, as a transpose would give them."""
    n_terms = len(doc_count)
    nnz = int(doc_count.sum())
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(doc_count, out=indptr[1:])
    index_dtype = np.int32 if max(nnz, n_docs) < 2**31 else np.int64
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=np.float64)
    filled = indptr[:-1].copy()
    offset = 0
    while blocks:
        block = blocks.pop(0)
        rows = block.shape[0]
        freq = block.data.astype(np.float64)
        doc_of_entry = np.repeat(np.arange(rows, dtype=np.int64), np.diff(block.indptr)) + offset
        weighted = sp.csr_matrix((term_weights(freq, idf[block.indices], norm[doc_of_entry], k1),
                                  block.indices, block.indptr), shape=(rows, n_terms)).tocsc()
        del block, freq, doc_of_entry
        counts = np.diff(weighted.indptr)
        term_of_entry = np.repeat(np.arange(n_terms, dtype=np.int64), counts)
        dest = filled[term_of_entry] + np.arange(weighted.nnz) - weighted.indptr[:-1][term_of_entry]
        indices[dest] = weighted.indices + offset
        data[dest] = weighted.data
        filled += counts
        offset += rows
    return sp.csr_matrix((data, indices, indptr), shape=(n_terms, n_docs))
