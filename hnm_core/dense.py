"""Stage 2b, dense retrieval: cached bi-encoder embeddings and a faiss inner-product index over them, exact below a
size and approximate (IVF) above it, with the approximate index's recall measured against exact search."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .cache import EmbeddingCache, texts_digest
from .errors import SettingsError
from .models import LoadedModel
from .progress import Progress, no_progress
from .retrieve import SearchResult
from .settings import setting
from .vectors import exact_search, row_blocks

__all__ = ["embedding_key", "encode", "DenseIndex", "IndexKind"]

IndexKind = Literal["exact", "hnsw", "ivf"]


def embedding_key(model: LoadedModel, texts: Sequence[str], prompt: str) -> str:
    """Cache key: the model fingerprint (weights, config, precision, max length), the prompt and the texts."""
    h = hashlib.blake2b(digest_size=16)
    for part in (model.fingerprint, prompt, texts_digest(texts), "normalized-v1"):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def encode(
    model: LoadedModel,
    texts: Sequence[str],
    *,
    prompt: str = "",
    batch_size: int = setting("batch_size").default,
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
    stage: str = "encode",
) -> np.ndarray:
    """L2-normalised embeddings of `texts` as an (n, dim) float16 array, from the on-disk cache when possible.

    Computed in chunks that are saved as they finish: a run that is killed resumes at the first missing chunk.
    """
    cache = EmbeddingCache(cache_dir)
    texts = list(texts)

    def compute(start: int, stop: int) -> np.ndarray:
        # One encode call per batch, so progress (and a Stop in the studio) comes every batch, not every cached
        # slice. Longest texts first, as sentence-transformers orders one call, so batches pad to similar lengths.
        order = sorted(range(start, stop), key=lambda i: -len(texts[i]))
        parts = []
        for at in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[at:at + batch_size]]
            parts.append(np.asarray(model.model.encode(batch, prompt=prompt or None, batch_size=batch_size,
                                                       normalize_embeddings=True, convert_to_numpy=True,
                                                       show_progress_bar=False), dtype=np.float32))
            if at + len(batch) < len(order):  # the cache reports the slice's end itself, once it is saved
                progress(stage, start + at + len(batch), len(texts))
        rows = np.empty_like(parts[0], shape=(stop - start, parts[0].shape[1]))
        rows[np.asarray(order) - start] = np.vstack(parts)
        return rows

    meta = {"model": model.name, "path": model.path, "fingerprint": model.fingerprint, "precision": model.precision,
            "max_length": model.max_length, "prompt": prompt}
    return cache.get_or_compute(embedding_key(model, texts, prompt), len(texts), compute, meta=meta,
                                progress=progress, stage=stage)


_IVF_TRAIN_PER_LIST = 64  # faiss warns below 39 points per cell; 64 keeps training to seconds at a million documents
_RECALL_QUERIES = 200  # queries whose approximate top-k is checked against the exact one


@dataclass
class DenseIndex:
    """Inner-product search over normalised embeddings (= cosine). `exact` is a flat index; `hnsw` and `ivf` trade a
    little recall for speed and memory on large corpora (`ivf` stores float16 vectors: exact for our float16
    embeddings, half the memory of float32); `auto` is exact up to `exact_max_docs` documents, ivf above."""

    index: object
    kind: IndexKind
    n_docs: int

    @classmethod
    def build(cls, doc_embeddings: np.ndarray, *, kind: IndexKind | Literal["auto"] = setting("index").default,
              seed: int = setting("seed").default, exact_max_docs: int = setting("exact_max_docs").default,
              hnsw_m: int = 32, ivf_lists: int | None = None) -> DenseIndex:
        """Build the index, adding documents a block at a time (a float16 memmap is never copied whole).
        `hnsw_m`: graph degree of HNSW; `ivf_lists`: IVF cells (default sqrt(n)), trained on a seeded sample of 64
        documents per cell."""
        import faiss

        n, dim = doc_embeddings.shape
        if kind == "auto":
            kind = "exact" if n <= exact_max_docs else "ivf"
        if kind == "exact":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        elif kind == "ivf":
            lists = ivf_lists or max(1, min(n // 39, int(np.sqrt(max(n, 1)))))
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists, faiss.ScalarQuantizer.QT_fp16,
                                                  faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            train = min(n, _IVF_TRAIN_PER_LIST * lists)
            rows = np.sort(np.random.default_rng(seed).choice(n, train, replace=False)) if train < n else slice(None)
            index.train(np.ascontiguousarray(doc_embeddings[rows], dtype=np.float32))
            index.nprobe = max(1, min(lists, max(8, lists // 8)))
        else:
            raise SettingsError(f"index {kind!r} is not one of auto, exact, hnsw, ivf")
        for _, block in row_blocks(doc_embeddings):
            index.add(block)
        return cls(index, kind, n)

    def recall(self, doc_embeddings: np.ndarray, query_embeddings: np.ndarray, k: int, *,
               seed: int = setting("seed").default, sample: int = _RECALL_QUERIES) -> dict[str, float | int]:
        """Recall@k of this index against exact search, on a seeded sample of queries: the mean share of each
        sampled query's exact top-k that this index also returns. 1.0 for an exact index (nothing is measured)."""
        k = min(k, self.n_docs)
        n_queries = len(query_embeddings)
        if self.kind == "exact" or k == 0 or n_queries == 0:
            return {"recall": 1.0, "k": k, "queries": 0}
        rows = np.sort(np.random.default_rng(seed).choice(n_queries, min(sample, n_queries), replace=False))
        queries = np.asarray(query_embeddings[rows], dtype=np.float32)
        _, truth = exact_search(doc_embeddings, queries, k)
        found = self.search(queries, k).indices
        hits = sum(len(np.intersect1d(t, f[f >= 0])) for t, f in zip(truth, found))
        return {"recall": hits / (k * len(rows)), "k": k, "queries": len(rows)}

    def search(self, query_embeddings: np.ndarray, k: int, *, progress: Progress = no_progress,
               stage: str = "dense search", batch: int = 1024) -> SearchResult:
        """Top-k documents per query, best first; ties keep the lower document index first (as the BM25 search).
        Approximate indexes may return fewer than k hits; missing slots hold index -1 and score -inf."""
        k = min(k, self.n_docs)
        queries = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        nq = len(queries)
        indices = np.empty((nq, k), dtype=np.int64)
        scores = np.empty((nq, k), dtype=np.float32)
        progress(stage, 0, nq)
        for start in range(0, nq, batch):
            stop = min(start + batch, nq)
            d, i = self.index.search(queries[start:stop], k)
            d = np.where(i < 0, -np.inf, d)
            order = np.lexsort((i, -d), axis=-1) if d.size else np.zeros_like(i)
            indices[start:stop] = np.take_along_axis(i, order, axis=1)
            scores[start:stop] = np.take_along_axis(d, order, axis=1)
            progress(stage, stop, nq)
        return SearchResult(indices, scores)
