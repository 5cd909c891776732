"""Vector helpers the stages share: cosines of (query, document) rows, the closest positive, seeded k-means.

Every embedding here is L2-normalised, so a dot product is a cosine.
"""

from __future__ import annotations

import numpy as np

from .settings import setting

__all__ = ["row_cosines", "pos_sim_max", "kmeans_clusters"]


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
        sims = doc_emb[rows] @ doc_emb[pos].T
        own = rows[:, None] == pos[None, :]
        sims[own] = -np.inf
        best = sims.max(axis=1)
        out[lo:hi] = np.where(np.isfinite(best), best, np.nan)
    return out


def kmeans_clusters(embeddings: np.ndarray, n_clusters: int, *, seed: int = setting("seed").default,
                    niter: int = 20) -> np.ndarray:
    """Seeded spherical k-means (faiss) over document embeddings; returns a cluster id per document."""
    import faiss

    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(vectors)
    k = max(1, min(int(n_clusters), n))
    if k == 1:
        return np.zeros(n, dtype=np.int32)
    km = faiss.Kmeans(vectors.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, n // k + 1))
    km.train(vectors)
    _, labels = km.index.search(vectors, 1)
    return labels[:, 0].astype(np.int32)
