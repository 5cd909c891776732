"""The Ray engine (`--engine ray`): the mining pipeline of pipeline.mine spread over a Ray cluster, with the same
results as the local engine.

- Encoding is Ray Data `map_batches` over an actor pool, one model per actor (a GPU each where the cluster has
  GPUs), each row one of the local engine's batches; the embeddings land in the same embedding cache, under the
  same keys and with the same bytes, as the local engine's.
- Retrieval is sharded by documents. A BM25 shard is an actor that tokenizes its documents once, reports its
  document frequencies and lengths, and builds its term weights with the global idf and average length, so its
  scores equal the single index's; a dense shard is a task with its own faiss index. Each shard returns its top-k
  per query and the driver merges them by (score, lower document index): the order of the local search.
- The pool, a cross-encoder's scores and the curation are partitioned by query: one task per run of queries
  (pool.pool_rows; a query's rows depend on its own hits alone; a partition holds whole blocks of the queries a
  cross-encoder batches together). A bi-encoder teacher is scored on the driver over the whole pool, its texts
  encoded by the actors.
- The saved pool's `pool.parquet` is a folder of part files, one per query partition, each written by its task;
  `load_pool`, `hnm curate`, the studio and the exports read it as one table.

`session()` joins the cluster at RAY_ADDRESS when it is set, else starts a small local one for the call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..cache import EmbeddingCache
from ..curate.margins import positive_like_share
from ..curate.overrides import Overrides
from ..curate.rules import CurateParams, Curation, combine
from ..curate.rules import curate as curate_local
from ..data import Collection
from ..manifest import package_versions
from ..models.loading import LoadedModel, load_bi_encoder
from ..pool import Pool, save_pool
from ..pool.rows import PoolRows, bm25_found, excluded_docs, fetch_depth, pool_rows, pool_stats
from ..progress import Progress, no_progress
from ..retrieve.result import SearchResult
from ..teacher.pair_scores import QUERY_BLOCK
from .ray_bm25 import ShardedBM25, merge_shards
from .ray_cluster import cluster_size, even_spans, partitions, ray_module, session

if TYPE_CHECKING:
    from .local import MiningParams

__all__ = ["session", "mine", "curate", "save_ray_pool"]

# Texts per Ray Data batch handed to an encoding actor (whole batches of the batch size, each one encode call).
_ENCODE_ROWS = 256


# ---- encoding: Ray Data map_batches over an actor pool -------------------------------------------------------------

class _Encoder:
    """One bi-encoder per actor. A row is one batch of the local engine's (dense.batch_order cut by the batch size),
    encoded in one call as there, so both engines give the same bytes."""

    def __init__(self, name: str, precision: str, max_seq_length: int | None, device: str) -> None:
        self.model = load_bi_encoder(name, precision=precision, max_seq_length=max_seq_length, device=device,
                                     eager=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..retrieve.dense import encode_batches

        vectors = [encode_batches(self.model, [str(t) for t in texts], prompt=str(prompt), batch_size=len(texts))
                   for texts, prompt in zip(batch["texts"], batch["prompt"])]
        sizes = [len(v) for v in vectors]
        return {"job": np.repeat(batch["job"], sizes),
                "pos": np.concatenate([at + np.arange(n) for at, n in zip(batch["at"], sizes)]),
                "embedding": np.vstack(vectors)}


def _encode(model: LoadedModel, jobs: Sequence[tuple[Sequence[str], str]], *, batch_size: int,
            cache_dir: str | Path | None, progress: Progress, stage: str) -> list[np.ndarray]:
    """Embeddings of each (texts, prompt) job as float16, from the cache where it holds them; the rest encoded in one
    Ray Data pass, batch by batch as the local engine encodes them, and stored in the cache under its keys."""
    from ..retrieve.dense import batch_order, embedding_key, embedding_meta

    ray = ray_module()
    cache = EmbeddingCache(cache_dir)
    keys = [embedding_key(model, texts, prompt, batch_size) for texts, prompt in jobs]
    found = [cache.get(key, len(texts)) for key, (texts, _) in zip(keys, jobs)]
    todo = [i for i, array in enumerate(found) if array is None]
    if not todo:
        return [np.asarray(array) for array in found]
    orders = {i: batch_order(jobs[i][0]) for i in todo}
    batches = [(i, at, [jobs[i][0][j] for j in orders[i][at : at + batch_size]], jobs[i][1])
               for i in todo for at in range(0, len(jobs[i][0]), batch_size)]
    total = sum(len(jobs[i][0]) for i in todo)
    progress(stage, 0, total)
    cpus, gpus = cluster_size()
    actors = max(1, min(gpus or cpus, math.ceil(total / _ENCODE_ROWS)))
    table = pd.DataFrame(batches, columns=["job", "at", "texts", "prompt"])
    # One block per actor, split here: from_pandas(override_num_blocks=) splits with np.array_split, which hands
    # it arrays, not frames, under pandas 3.
    rows = ray.data.from_pandas([table.iloc[a:b] for a, b in even_spans(len(table), actors)])
    # max_restarts=0: an actor that dies fails the run (its chunks already in the cache are kept for the next).
    encoded = rows.map_batches(
        _Encoder, fn_constructor_args=(model.path, model.precision, model.max_length, model.device),
        batch_size=max(1, _ENCODE_ROWS // batch_size), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
        max_restarts=0).to_pandas()
    progress(stage, total, total)
    for i in todo:
        done = encoded[encoded["job"] == i].sort_values("pos")
        block = np.stack(done["embedding"].to_numpy())  # in batch order, position by position
        found[i] = cache.get_or_compute(keys[i], len(block), lambda a, b, block=block: block[a:b],
                                        meta=embedding_meta(model, jobs[i][1], batch_size), order=orders[i],
                                        unit=batch_size)
    return [np.asarray(array) for array in found]


def _model(name: str, precision: str, max_seq_length: int | None) -> LoadedModel:
    """The model reference (not loaded here) on the device the encoding actors get: its fingerprint keys the cache."""
    _, gpus = cluster_size()
    return load_bi_encoder(name, precision=precision, max_seq_length=max_seq_length, device="cuda" if gpus else "cpu")


# ---- retrieval sharded by documents ---------------------------------------------------------------------------------


def _dense_shard(doc_vectors: np.ndarray, start: int, stop: int, query_vectors: np.ndarray, k: int, kind: str,
                 seed: int) -> SearchResult:
    from ..retrieve.dense import DenseIndex

    result = DenseIndex.build(doc_vectors[start:stop], kind=kind, seed=seed).search(query_vectors, k)
    return SearchResult(np.where(result.indices < 0, -1, result.indices + start), result.scores)


def _dense_search(doc_ref: Any, n_docs: int, query_ref: Any, k: int, kind: str, seed: int) -> SearchResult:
    ray = ray_module()
    cpus, _ = cluster_size()
    task = ray.remote(num_cpus=1)(_dense_shard)
    return merge_shards(ray.get([task.remote(doc_ref, a, b, query_ref, k, kind, seed)
                                 for a, b in even_spans(n_docs, cpus)]), k)


# ---- the pool and the teacher, partitioned by query -----------------------------------------------------------------

def _pool_part(collection: Collection, first: int, found: dict[str, np.ndarray], positives: list[np.ndarray],
               duplicates: list[np.ndarray], params: MiningParams, bm25: ShardedBM25 | None, doc_vectors: np.ndarray | None,
               query_vectors: np.ndarray | None, clusters: np.ndarray | None, meta: dict[str, Any],
               cache_dir: str | Path | None) -> tuple[pd.DataFrame, PoolRows, dict[str, Any] | None]:
    """The scored rows of queries first, first + 1, ...: assembled, scored by each retriever, then by a cross-encoder
    or ensemble teacher (batched by whole query blocks, which the partition holds) with its record; a bi-encoder teacher is left to the
    driver (record None)."""
    from ..retrieve.vectors import pos_sim_max, row_cosines
    from ..teacher.scoring import load_teacher, score_pool

    rows = pool_rows(found, positives, duplicates, params.pool.top_k, first_query=first)
    qi, di = rows.query_idx, rows.doc_idx
    scores: dict[str, np.ndarray] = {}
    if bm25 is not None:
        scores["bm25_score"] = bm25.score_pairs(collection.query_texts, qi, di)
    if doc_vectors is not None and query_vectors is not None and clusters is not None:
        scores.update(dense_score=row_cosines(query_vectors, qi, doc_vectors, di),
                      pos_sim_max=pos_sim_max(doc_vectors, qi, di, rows.is_positive), cluster=clusters[di])
    frame = rows.frame(collection, **scores)
    if params.teacher.kind == "bi-encoder":  # scored on the driver, over the whole pool
        return frame, rows, None
    part = Pool(frame, collection, pool_stats(len(positives), frame, [rows]), meta)
    scored = score_pool(part, params.teacher, cache_dir=cache_dir, model=load_teacher(params.teacher))
    return scored.frame, rows, scored.meta["teacher"]


def _teacher_meta(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One partition's teacher record with the counts summed over all of them."""
    meta = {**parts[0], "scored_rows": sum(p["scored_rows"] for p in parts)}
    if "cross_fit" in meta:
        meta["cross_fit"] = {**meta["cross_fit"],
                             "rows_per_fold": np.sum([p["cross_fit"]["rows_per_fold"] for p in parts], axis=0).tolist(),
                             "rows_unseen": sum(p["cross_fit"]["rows_unseen"] for p in parts)}
    return meta


def mine(collection: Collection, params: MiningParams, *, cache_dir: str | Path | None = None,
         doc_embeddings: str | Path | None = None, query_embeddings: str | Path | None = None,
         progress: Progress = no_progress) -> Pool:
    """pipeline.mine on Ray: the same candidate pool, scored by the same teacher (see the module docstring).
    `doc_embeddings` / `query_embeddings` name embeddings files read on the driver instead of encoding (see
    pool.build_pool); the side without a file is encoded by the actors."""
    from ..retrieve.vectors import kmeans_clusters
    from ..teacher.scoring import load_teacher, score_pool

    with session():
        ray = ray_module()
        pool_params = params.pool
        nq, nd = len(collection.query_ids), len(collection.doc_ids)
        positives, duplicates = excluded_docs(collection)
        fetch = fetch_depth(nd, pool_params.top_k, positives, duplicates)
        meta: dict[str, Any] = {"settings": pool_params.settings(), "collection": {
            "name": collection.name, "source": collection.source, "docs": nd, "queries": nq}}
        found: dict[str, np.ndarray] = {}
        bm25 = doc_vectors = query_vectors = clusters = None
        doc_emb = query_emb = None
        if "bm25" in pool_params.sources:
            progress("bm25 index (ray)", 0, nd)
            bm25 = ShardedBM25.build(collection.doc_texts, k1=pool_params.bm25_k1, b=pool_params.bm25_b,
                               stopwords=pool_params.stopwords)
            progress("bm25 index (ray)", nd, nd)
            found["bm25"] = bm25_found(bm25.search(collection.query_texts, fetch))
        if "dense" in pool_params.sources:
            from ..pool.build import dense_embeddings

            files = (doc_embeddings, query_embeddings)
            model = None if all(files) else _model(pool_params.model, pool_params.precision,
                                                   pool_params.max_seq_length)
            doc_emb, query_emb = dense_embeddings(
                collection, pool_params, meta, cache_dir=cache_dir, encoder=model, files=files, progress=progress,
                encode_many=lambda model, jobs: _encode(model, jobs, batch_size=pool_params.batch_size,
                                                        cache_dir=cache_dir, progress=progress, stage="encode (ray)"))
            doc_vectors = np.asarray(doc_emb, dtype=np.float32)
            query_vectors = np.asarray(query_emb, dtype=np.float32)
            doc_ref, query_ref = ray.put(doc_vectors), ray.put(query_vectors)
            found["dense"] = _dense_search(doc_ref, nd, query_ref, fetch, pool_params.index, pool_params.seed).indices
            clusters = kmeans_clusters(doc_vectors, pool_params.n_clusters or round(np.sqrt(nd)),
                                       seed=pool_params.seed)
            meta["clusters"] = int(clusters.max()) + 1 if len(clusters) else 0
        # whole blocks of queries per partition: a cross-encoder batches each block's pairs together
        spans = even_spans(nq, partitions(nq), align=QUERY_BLOCK)
        shared = [ray.put(x) for x in (collection, params, bm25, doc_vectors, query_vectors, clusters, meta)]
        task = ray.remote(num_cpus=1)(_pool_part)
        progress("pool (ray)", 0, nq)
        refs = [task.remote(shared[0], a, {name: hits[a:b] for name, hits in found.items()}, positives[a:b],
                            duplicates[a:b], shared[1], shared[2], shared[3], shared[4], shared[5], shared[6],
                            cache_dir) for a, b in spans]
        parts = ray.get(refs)
        progress("pool (ray)", nq, nq)
        frame = pd.concat([f for f, _, _ in parts], ignore_index=True)
        stats = pool_stats(nq, frame, [rows for _, rows, _ in parts])
        meta = {**meta, "stats": dataclasses.asdict(stats), "versions": package_versions(),
                "engine": {"name": "ray", "query_partitions": len(spans)}}
        if params.teacher.kind != "bi-encoder":
            meta = {**meta, "settings": {**meta["settings"], **params.teacher.settings()},
                    "teacher": _teacher_meta([t for _, _, t in parts])}
            return Pool(frame, collection, stats, meta, doc_emb, query_emb)
        # A bi-encoder teacher's texts are those of the whole pool, as in the local engine (the same embeddings, the
        # same bytes): the driver scores it, its texts encoded by the actors.
        return score_pool(Pool(frame, collection, stats, meta, doc_emb, query_emb), params.teacher,
                          cache_dir=cache_dir, model=load_teacher(params.teacher), progress=progress,
                          encode_many=lambda model, jobs: _encode(model, jobs, batch_size=params.teacher.batch_size,
                                                                  cache_dir=cache_dir, progress=progress,
                                                                  stage="teacher: encode (ray)"))


# ---- curation and the saved pool, partitioned by query ---------------------------------------------------------------

def _query_spans(frame: pd.DataFrame) -> list[tuple[int, int]]:
    """Row ranges of a pool table (rows grouped by query), whole queries each, as many as `partitions` says."""
    ids = frame["query_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.empty(0, np.int64)
    cuts = [int(starts[a]) for a, _ in even_spans(len(starts), partitions(len(starts)))] + [len(ids)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:])] or [(0, 0)]


def curate(frame: pd.DataFrame, params: CurateParams, overrides: Overrides | None = None) -> Curation:
    """curate.curate with one Ray task per run of queries: the same labels and negatives (a query's labels, draws
    and verdicts depend on its own rows alone, and margin_ref "auto" on the whole pool's share, computed here)."""
    share = positive_like_share(frame) if params.margin_ref == "auto" else None
    with session():
        ray = ray_module()
        task = ray.remote(num_cpus=1)(curate_local)
        params_ref, overrides_ref = ray.put(params), ray.put(overrides)
        parts = ray.get([task.remote(frame.iloc[a:b], params_ref, overrides_ref, auto_share=share)
                         for a, b in _query_spans(frame)])
    return combine(parts)


def _write_part(frame: pd.DataFrame, path: str) -> None:
    frame.to_parquet(path, index=False)


def _write_parts(frame: pd.DataFrame, folder: Path) -> None:
    """pool.parquet as a folder of part files, one per run of queries, each written by a Ray task; file names sort in
    query order, the order Parquet readers return them in."""
    with session():
        ray = ray_module()
        folder.mkdir()
        task = ray.remote(num_cpus=1)(_write_part)
        ray.get([task.remote(frame.iloc[a:b], str(folder / f"part-{i:05d}.parquet"))
                 for i, (a, b) in enumerate(_query_spans(frame))])


def save_ray_pool(pool: Pool, out_dir: str | Path, *, overwrite: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """pool.save_pool with pool.parquet written as partitioned Parquet (a folder of parts) by Ray tasks."""
    return save_pool(pool, out_dir, overwrite=overwrite, inputs=inputs, write_frame=_write_parts)
