"""Vector helpers the stages share: cosines of (query, document) rows, the closest positive, seeded k-means, and
block-wise reads and exact search over embeddings too large for memory.

Every embedding here is L2-normalised, so a dot product is a cosine. Embeddings arrive as float16 memmaps from the
cache (hnm_core.cache); `row_blocks` reads them a block of rows at a time through a fresh mapping per block, so the
pages of a finished block leave the process (and its peak RSS) when the block does.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

from ..settings import setting

__all__ = ["row_cosines", "pos_sim_max", "kmeans_clusters", "row_blocks", "exact_search", "merge_top_k",
           "BLOCK_ROWS"]

BLOCK_ROWS = 65_536
"""Rows read at a time by the block-wise helpers: 48 MB of float32 at dimension 192, 96 MB at 384."""
# k-means trains on at most this many documents (seeded sample): below it every document is used, as always.
_KMEANS_TRAIN_MAX = 1 << 18


def row_blocks(array: np.ndarray, block: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 copy of the next `block` rows) over `array`. A memmap is mapped afresh for each block and
    unmapped after it, so reading a file larger than memory keeps only one block resident."""
    n = len(array)
    # Only a whole mapping (its base the mmap itself) knows its file offset; a slice of one is read as an array.
    if isinstance(array, np.memmap) and array.filename is not None and isinstance(array.base, mmap.mmap):
        row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:]))
        for start in range(0, n, block):
            rows = min(block, n - start)
            view = np.memmap(array.filename, dtype=array.dtype, mode="r", offset=array.offset + start * row_bytes,
                             shape=(rows, *array.shape[1:]))
            out = np.asarray(view, dtype=np.float32)
            del view
            yield start, out
        return
    for start in range(0, n, block):
        yield start, np.asarray(array[start : start + block], dtype=np.float32)


def merge_top_k(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best of candidate (score, index) columns: score descending, ties to the lower index."""
    order = np.lexsort((indices, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def exact_search(doc_emb: np.ndarray, query_vectors: np.ndarray, k: int,
                 block: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of `query_vectors` over `doc_emb`, read one block of documents at a time (memory:
    one block and n_queries * (k + block) scores). Returns (scores float32, indices int64), best first."""
    queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
    k = min(k, len(doc_emb))
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start, docs in row_blocks(doc_emb, block):
        sims = queries @ docs.T
        keep = min(k, sims.shape[1])
        top = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
        best_s, best_i = merge_top_k(np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1),
                                     np.concatenate([best_i, top + start], axis=1), k)
    return best_s, best_i


def row_cosines(query_emb: np.ndarray, qi: np.ndarray, doc_emb: np.ndarray, di: np.ndarray,
                chunk: int = 65536) -> np.ndarray:
    """Cosine of each (query qi[r], document di[r]) row for normalised embeddings, in bounded-memory chunks."""
    out = np.empty(len(qi), dtype=np.float32)
    for start in range(0, len(qi), chunk):
        q = np.asarray(query_emb[qi[start : start + chunk]], dtype=np.float32)
        d = np.asarray(doc_emb[di[start : start + chunk]], dtype=np.float32)
        out[start : start + chunk] = np.einsum("ij,ij->i", q, d)
    return out


def pos_sim_max(doc_emb: np.ndarray, qi: np.ndarray, di: np.ndarray, is_positive: np.ndarray) -> np.ndarray:
    """Max cosine of each row's document to the query's positives, other than itself (NaN when there is none)."""
    out = np.full(len(qi), np.nan, dtype=np.float32)
    bounds = np.flatnonzero(np.r_[True, qi[1:] != qi[:-1], True]) if len(qi) else np.array([0])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = di[lo:hi]
        pos = rows[is_positive[lo:hi]]
        if len(pos) == 0:
            continue
        docs = np.asarray(doc_emb[rows], dtype=np.float32)  # float16 memmap rows: widen before the product
        sims = docs @ np.asarray(doc_emb[pos], dtype=np.float32).T
        own = rows[:, None] == pos[None, :]
        sims[own] = -np.inf
        best = sims.max(axis=1)
        out[lo:hi] = np.where(np.isfinite(best), best, np.nan)
    return out


def kmeans_clusters(embeddings: np.ndarray, n_clusters: int, *, seed: int = setting("seed").default,
                    niter: int = 20) -> np.ndarray:
    """Seeded spherical k-means (faiss) over document embeddings; returns a cluster id per document.

    Trains on every document up to 262,144 of them (a seeded sample above), then assigns all of them block by block,
    so memory stays at the sample and one block however large the collection."""
    import faiss

    n = len(embeddings)
    k = max(1, min(int(n_clusters), n))
    if k == 1:
        return np.zeros(n, dtype=np.int32)
    if n <= _KMEANS_TRAIN_MAX:
        sample = np.ascontiguousarray(embeddings, dtype=np.float32)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, _KMEANS_TRAIN_MAX, replace=False))
        sample = np.ascontiguousarray(embeddings[rows], dtype=np.float32)
    km = faiss.Kmeans(sample.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, len(sample) // k + 1))
    km.train(sample)
    del sample
    labels = np.empty(n, dtype=np.int32)
    for start, block in row_blocks(embeddings):
        labels[start : start + len(block)] = km.index.search(block, 1)[1][:, 0]
    return labels
