"""Stage 3, pool: the union of every retriever's top-K per query, minus its positives, with provenance.

The table follows hnm_core.schema.POOL_COLUMNS (meanings in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..cache import EmbeddingCache
from ..data import Collection
from ..manifest import package_versions
from ..models.loading import LoadedModel, load_bi_encoder
from ..progress import Progress, no_progress
from ..retrieve.vectors import kmeans_clusters, pos_sim_max, row_cosines

if TYPE_CHECKING:
    from ..retrieve.dense import EncodeMany
from .params import Pool, PoolParams
from .rows import PoolRows, bm25_found, excluded_docs, fetch_depth, pool_rows, pool_stats

__all__ = ["build_pool", "Retrieval",
           "prepare_retrieval", "pool_block"]


@dataclass(frozen=True)
class Retrieval:
    """What every block of queries is answered from, built once per pool: the BM25 index, the dense index and the
    embeddings it searches, the documents' k-means clusters, each query's positives and their duplicates, and how
    deep to fetch so that `top_k` candidates remain once they are dropped. A block of queries (`pool_block`) reads it
    and nothing else, so blocks can be built in any order, or on other workers."""

    top_k: int
    fetch: int
    positives: list[np.ndarray]
    duplicates: list[np.ndarray]
    bm25: Any = None  # a BM25Index when BM25 is a source
    dense: Any = None  # a DenseIndex when dense is a source
    doc_embeddings: np.ndarray | None = None
    query_embeddings: np.ndarray | None = None
    clusters: np.ndarray | None = None


def build_pool(
    collection: Collection,
    params: PoolParams,
    *,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    doc_embeddings: str | Path | None = None,
    query_embeddings: str | Path | None = None,
    query_block: int = 4096,
    progress: Progress = no_progress,
) -> Pool:
    """Retrieve each query's top-K with every source, drop its positives (by id and by normalised text), and return
    the pooled candidates with provenance, under the pool-stage settings `params`.

    `encoder` passes an already loaded bi-encoder (the app keeps one in memory); otherwise `params.model` is loaded.
    `doc_embeddings` / `query_embeddings` name files of embeddings made elsewhere (see hnm_core.retrieve.embedding_files),
    used instead of encoding that side. Queries are answered `query_block` at a time (`pool_block`), so memory holds
    one block's scores; the result does not depend on the block size.
    """
    retrieval, meta = prepare_retrieval(collection, params, cache_dir=cache_dir, encoder=encoder,
                                        doc_embeddings=doc_embeddings, query_embeddings=query_embeddings,
                                        progress=progress)
    nq = len(collection.query_ids)
    frames: list[pd.DataFrame] = []
    parts: list[PoolRows] = []
    progress("pool", 0, nq)
    for start in range(0, nq, max(1, query_block)):
        frame, rows = pool_block(collection, retrieval, range(start, min(nq, start + query_block)), progress=progress)
        frames.append(frame)
        parts.append(rows)
        progress("pool", min(nq, start + query_block), nq)
    frame = pd.concat(frames, ignore_index=True) if frames else pool_block(collection, retrieval, range(0))[0]
    stats = pool_stats(nq, frame, parts)
    meta["stats"] = asdict(stats)
    meta["versions"] = package_versions()
    return Pool(frame, collection, stats, meta, retrieval.doc_embeddings, retrieval.query_embeddings)


def prepare_retrieval(collection: Collection, params: PoolParams, *, cache_dir: str | Path | None = None,
                      encoder: LoadedModel | None = None, doc_embeddings: str | Path | None = None,
                      query_embeddings: str | Path | None = None,
                      progress: Progress = no_progress) -> tuple[Retrieval, dict[str, Any]]:
    """Index the collection with every source of `params` (BM25 in blocks of documents; embeddings encoded, or read
    from the given files, into the cache; the dense index chosen by size, its recall measured) and cluster the
    documents. Returns the Retrieval and the pool's manifest so far."""
    nd = len(collection.doc_ids)
    positives, duplicates = excluded_docs(collection)
    fetch = fetch_depth(nd, params.top_k, positives, duplicates)
    meta: dict[str, Any] = {"settings": params.settings(), "collection": {
        "name": collection.name, "source": collection.source, "docs": nd, "queries": len(collection.query_ids)}}
    parts: dict[str, Any] = {}
    if "bm25" in params.sources:
        from ..retrieve.bm25 import BM25Index

        parts["bm25"] = BM25Index.build(collection.doc_texts, k1=params.bm25_k1, b=params.bm25_b,
                                        stopwords=params.stopwords, progress=progress)
    if "dense" in params.sources:
        from ..retrieve.dense import DenseIndex

        doc_emb, query_emb = dense_embeddings(collection, params, meta, cache_dir=cache_dir, encoder=encoder,
                                         files=(doc_embeddings, query_embeddings), progress=progress)
        dense = DenseIndex.build(doc_emb, kind=params.index, seed=params.seed, exact_max_docs=params.exact_max_docs)
        meta["dense_index"] = {"kind": dense.kind, "docs": nd,
                               **dense.recall(doc_emb, query_emb, fetch, seed=params.seed)}
        clusters = kmeans_clusters(doc_emb, params.n_clusters or round(np.sqrt(nd)), seed=params.seed)
        meta["clusters"] = int(clusters.max()) + 1 if len(clusters) else 0
        parts.update(dense=dense, doc_embeddings=doc_emb, query_embeddings=query_emb, clusters=clusters)
    return Retrieval(params.top_k, fetch, positives, duplicates, **parts), meta


def dense_embeddings(collection: Collection, params: PoolParams, meta: dict[str, Any], *,
                     cache_dir: str | Path | None, encoder: LoadedModel | None,
                     files: tuple[str | Path | None, str | Path | None], progress: Progress,
                     encode_many: EncodeMany | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Document and query embeddings (float16 memmaps from the cache): read from `files` where given, encoded with
    the bi-encoder otherwise, here or by `encode_many(model, [(texts, prompt), ...])` (the Ray engine's actors, one
    pass for every side it is given). Records the model (or the files) and the cache keys in `meta`."""
    from ..errors import DataError
    from ..manifest import digest
    from ..retrieve.dense import embedding_key, encode
    from ..retrieve.embedding_files import read_embeddings

    doc_file, query_file = files
    sides = [("document", doc_file, collection.doc_ids, collection.doc_texts, params.doc_prompt),
             ("query", query_file, collection.query_ids, collection.query_texts, params.query_prompt)]
    if encoder is None and (doc_file is None or query_file is None):
        encoder = load_bi_encoder(params.model, precision=params.precision, max_seq_length=params.max_seq_length)
    read: dict[str, tuple[np.ndarray, str]] = {}  # files first: a bad one is refused before any encoding
    for kind, file, ids, _, _ in sides:
        if file is not None:
            read[kind] = read_embeddings(file, ids, kind=kind, cache_dir=cache_dir, progress=progress,
                                         dim=read["document"][0].shape[1] if read else None)
    jobs = [(texts, prompt) for kind, _, _, texts, prompt in sides if kind not in read]
    if encode_many is not None and jobs:
        encoded = iter(encode_many(encoder, jobs))
    else:
        encoded = iter([encode(encoder, texts, prompt=prompt, batch_size=params.batch_size, cache_dir=cache_dir,
                               progress=progress, stage=f"encode {'documents' if kind == 'document' else 'queries'}")
                        for kind, _, _, texts, prompt in sides if kind not in read])
    out, keys = [], []
    for kind, _, _, texts, prompt in sides:
        if kind in read:
            emb, key = read[kind]
        else:
            emb, key = next(encoded), embedding_key(encoder, texts, prompt, params.batch_size)
        out.append(emb)
        keys.append(key)
    if len(read) == 1 and out[0].shape[1] != out[1].shape[1]:  # one side read, the other encoded
        from_file = "document" if doc_file is not None else "query"
        encoded_side, flag = ("query", "--query-embeddings") if from_file == "document" else ("document",
                                                                                             "--doc-embeddings")
        dims = {"document": out[0].shape[1], "query": out[1].shape[1]}
        raise DataError(doc_file or query_file, f"holds {dims[from_file]}-dimensional {from_file} embeddings; "
                        f"{encoder.name} makes {dims[encoded_side]}-dimensional {encoded_side} embeddings",
                        fix=f"give {flag} too, or --model the model that made the file")
    if encoder is not None:
        meta["model"] = {"name": encoder.name, "path": encoder.path, "fingerprint": encoder.fingerprint,
                         "precision": encoder.precision, "max_seq_length": encoder.max_length}
    else:
        meta["model"] = {"name": "embeddings files", "fingerprint": digest(keys)}
    meta["embeddings"] = {"cache_dir": str(EmbeddingCache(cache_dir).root), "docs": keys[0], "queries": keys[1],
                          **({"files": {"docs": str(doc_file) if doc_file else None,
                                        "queries": str(query_file) if query_file else None}}
                             if doc_file or query_file else {})}
    return out[0], out[1]


def pool_block(collection: Collection, retrieval: Retrieval, queries: range, *,
               progress: Progress = no_progress) -> tuple[pd.DataFrame, PoolRows]:
    """The pool rows of the queries at positions `queries` (a range of `collection.query_ids`), grouped by query,
    positives first, then candidates by fused rank, as a POOL_COLUMNS table with its scores, and the PoolRows they
    came from (what `pool_stats` counts). `progress` hears the searches as counts over all queries."""
    r = retrieval
    n_queries = len(collection.query_ids)

    def searched(stage: str, done: int, total: int) -> None:
        if done or not queries.start:  # a later block's start is the previous block's end, already reported
            progress(stage, queries.start + done, n_queries)

    texts = [collection.query_texts[q] for q in queries]
    found: dict[str, np.ndarray] = {}
    if r.bm25 is not None:
        found["bm25"] = bm25_found(r.bm25.search(texts, r.fetch, progress=searched))
    block_query_emb = None
    if r.dense is not None:
        block_query_emb = np.asarray(r.query_embeddings[queries.start : queries.stop], dtype=np.float32)
        found["dense"] = r.dense.search(block_query_emb, r.fetch, progress=searched).indices
    rows = pool_rows(found, r.positives[queries.start : queries.stop], r.duplicates[queries.start : queries.stop],
                     r.top_k, first_query=queries.start)
    local = rows.query_idx - queries.start  # positions within the block
    di = rows.doc_idx
    frame = rows.frame(
        collection,
        bm25_score=r.bm25.score_pairs(texts, local, di) if r.bm25 is not None else None,
        dense_score=row_cosines(block_query_emb, local, r.doc_embeddings, di) if r.dense is not None else None,
        pos_sim_max=pos_sim_max(r.doc_embeddings, rows.query_idx, di, rows.is_positive)
        if r.dense is not None else None,
        cluster=r.clusters[di] if r.clusters is not None else None)
    return frame, rows


