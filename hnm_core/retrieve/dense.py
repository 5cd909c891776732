"""Stage 2b, dense retrieval: cached bi-encoder embeddings and a faiss inner-product index over them, exact below a
size and approximate (IVF) above it, with the approximate index's recall measured against exact search."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..cache import EmbeddingCache, texts_digest
from ..errors import SettingsError
from ..models.loading import LoadedModel
from ..models.memory import reusing_heap
from ..progress import Progress, no_progress
from ..settings import setting
from .result import SearchResult
from .vectors import exact_search, row_blocks

__all__ = ["embedding_key", "embedding_meta", "batch_order", "encode_batches", "encode", "EncodeMany", "DenseIndex",
           "IndexKind"]

IndexKind = Literal["exact", "hnsw", "ivf"]
EncodeMany = Callable[[LoadedModel, list[tuple[Sequence[str], str]]], list[np.ndarray]]
"""Encodes (texts, prompt) jobs elsewhere, as encode would (the Ray engine's actors): one array per job."""


def embedding_key(model: LoadedModel, texts: Sequence[str], prompt: str, batch_size: int) -> str:
    """Cache key: the model fingerprint (weights, config, precision, max length), the prompt, the batch size (which
    texts share a batch, and so their padding and rounding) and the texts."""
    h = hashlib.blake2b(digest_size=16)
    for part in (model.fingerprint, prompt, str(batch_size), texts_digest(texts), "normalized-v1", "batches-v2"):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def batch_order(texts: Sequence[str]) -> np.ndarray:
    """The order texts are encoded in: longest first (as sentence-transformers orders one call, so a batch pads to
    similar lengths), ties by position. Cut into batches of the batch size, it fixes which texts share a batch from
    the texts alone: a run encodes every text with the same companions whatever its slices, resume point, load or
    engine."""
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")


def encode_batches(model: LoadedModel, texts: Sequence[str], *, prompt: str, batch_size: int,
                   on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """float32 embeddings of `texts`, one model.encode call per `batch_size` texts in the given order (the caller's
    batches: a slice of batch_order). `on_batch(n)` after each batch but the last, with the texts done so far.
    Each batch's activations reuse the last one's heap pages (models/memory.py): on SciFact's longest 768 documents,
    one thread, 35.5 s instead of 40.1 in bf16 and 58 instead of 65 in fp32, the same embeddings to the bit."""
    parts = []
    with reusing_heap():
        for at in range(0, len(texts), batch_size):
            batch = list(texts[at : at + batch_size])
            parts.append(np.asarray(model.model.encode(batch, prompt=prompt or None, batch_size=len(batch),
                                                       normalize_embeddings=True, convert_to_numpy=True,
                                                       show_progress_bar=False), dtype=np.float32))
            if on_batch is not None and at + len(batch) < len(texts):
                on_batch(at + len(batch))
    return np.vstack(parts)


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

    Encoded in batch_order, in batches of `batch_size` fixed by the texts, and saved in slices of whole batches as
    they finish: a run that is killed resumes at the first missing slice and gives the same bytes as one that was not.
    """
    cache = EmbeddingCache(cache_dir)
    texts = list(texts)
    order = batch_order(texts)

    def compute(start: int, stop: int) -> np.ndarray:
        # One encode call per batch, so progress (and a Stop in the studio) comes every batch, not every cached
        # slice; the cache reports the slice's end itself, once it is saved.
        return encode_batches(model, [texts[i] for i in order[start:stop]], prompt=prompt, batch_size=batch_size,
                              on_batch=lambda done: progress(stage, start + done, len(texts)))

    with reusing_heap():  # across the slices: each slice's encode_batches would otherwise hand its pages back
        return cache.get_or_compute(embedding_key(model, texts, prompt, batch_size), len(texts), compute,
                                    meta=embedding_meta(model, prompt, batch_size), order=order, unit=batch_size,
                                    progress=progress, stage=stage)


def embedding_meta(model: LoadedModel, prompt: str, batch_size: int) -> dict[str, object]:
    """What a cached embedding entry records of how it was computed (its meta.json)."""
    return {"model": model.name, "path": model.path, "fingerprint": model.fingerprint, "precision": model.precision,
            "max_length": model.max_length, "prompt": prompt, "batch_size": batch_size}


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
