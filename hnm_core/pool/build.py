"""Stage 3, pool: the union of every retriever's top-K per query, minus its positives, with provenance.

The table follows hnm_core.schema.POOL_COLUMNS (meanings in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..cache import EmbeddingCache
from ..data import Collection, normalize_text
from ..manifest import package_versions, write_json
from ..models.loading import LoadedModel, load_bi_encoder
from ..progress import Progress, no_progress
from ..retrieve.result import SearchResult
from ..retrieve.vectors import kmeans_clusters, pos_sim_max, row_cosines
from ..schema import MEMBER_COLUMNS, POOL_COLUMNS, missing_columns
from ..settings import StageParams
from ..wording import counted

if TYPE_CHECKING:
    from ..retrieve.dense import EncodeMany

__all__ = ["Pool", "PoolParams", "PoolStats", "build_pool", "save_pool", "load_pool", "Retrieval",
           "prepare_retrieval", "pool_block"]


@dataclass(frozen=True)
class PoolParams(StageParams):
    """The `pool`-stage settings plus the seed (k-means, an approximate index); see hnm_core/settings.py for each
    one's help. Build it with `PoolParams.from_settings(values)`: the fields have no defaults but the table's."""

    sources: tuple[Literal["bm25", "dense"], ...]
    top_k: int
    model: str
    precision: Literal["auto", "fp32", "bf16"]
    max_seq_length: int
    query_prompt: str
    doc_prompt: str
    index: Literal["auto", "exact", "hnsw", "ivf"]
    exact_max_docs: int
    batch_size: int
    stopwords: bool
    bm25_k1: float
    bm25_b: float
    n_clusters: int
    seed: int


@dataclass(frozen=True)
class PoolStats:
    """What building the pool kept and dropped, as numbers and as sentences for the UI."""

    n_queries: int
    n_candidates: int
    n_positive_rows: int
    dropped_positive_ids: int  # retrieved documents that are labelled positives (by id)
    dropped_positive_duplicates: int  # retrieved documents whose normalised text equals a positive's
    found_by: dict[str, int] = field(default_factory=dict)  # "bm25", "dense", "bm25+dense" -> candidates

    def sentences(self) -> list[str]:
        out = [f"{counted(self.n_candidates, 'candidate')} for {counted(self.n_queries, 'query', 'queries')} "
               f"({counted(self.n_positive_rows, 'labelled positive')} kept for scoring)."]
        names = {"bm25": "BM25 only", "dense": "dense only", "bm25+dense": "both BM25 and dense"}
        out += [f"{n:,} found by {names.get(key, key)}." for key, n in sorted(self.found_by.items())]
        out.append(f"Left out {counted(self.dropped_positive_ids, 'retrieved labelled positive')} and "
                   f"{counted(self.dropped_positive_duplicates, 'duplicate')} of a positive under another id.")
        return out


@dataclass(frozen=True)
class Pool:
    """A candidate pool in memory.

    `frame` follows POOL_COLUMNS. `doc_embeddings` (float16/float32, aligned with `collection.doc_ids`, L2-normalised)
    and `query_embeddings` (aligned with `collection.query_ids`) are present when dense retrieval ran.
    `meta` holds the settings used, model and teacher fingerprints, and versions; it becomes the manifest.
    """

    frame: pd.DataFrame
    collection: Collection
    stats: PoolStats
    meta: dict[str, Any] = field(default_factory=dict)
    doc_embeddings: np.ndarray | None = None
    query_embeddings: np.ndarray | None = None


def excluded_docs(collection: Collection) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query: the doc indices of its positives, and of documents whose normalised text equals a positive's."""
    doc_index = collection.doc_index
    pos_by_query = [[doc_index[d] for d in collection.positives[qid]] for qid in collection.query_ids]
    pos_keys = [[normalize_text(collection.doc_texts[p]) for p in pos] for pos in pos_by_query]
    # Only positives' texts are kept as keys, so a million-document corpus is normalised but never held twice.
    wanted = {key for keys in pos_keys for key in keys}
    by_text: dict[str, list[int]] = {}
    for i, text in enumerate(collection.doc_texts):
        key = normalize_text(text)
        if key in wanted:
            by_text.setdefault(key, []).append(i)
    positives, duplicates = [], []
    for pos, keys in zip(pos_by_query, pos_keys):
        dup = {j for key in keys for j in by_text[key]} - set(pos)
        positives.append(np.array(pos, dtype=np.int64))
        duplicates.append(np.array(sorted(dup), dtype=np.int64))
    return positives, duplicates


def fetch_depth(n_docs: int, top_k: int, positives: Sequence[np.ndarray], duplicates: Sequence[np.ndarray]) -> int:
    """How many documents each retriever fetches per query: enough that K candidates remain after removing the
    query's positives and their duplicates."""
    return min(n_docs, top_k + max((len(p) + len(d) for p, d in zip(positives, duplicates)), default=0))


def bm25_found(result: SearchResult) -> np.ndarray:
    """BM25's hits with the score-0 fill masked (-1): a document sharing no term with the query was not found."""
    return np.where(result.scores > 0, result.indices, -1)


_RRF_K = 60  # the constant of Cormack et al.'s reciprocal-rank fusion; large enough that no one source dominates
_SOURCES = ("bm25", "dense")


@dataclass(frozen=True)
class _SourceHits:
    """One retriever's result for one query: candidates in rank order, the positives' ranks in the full ranking,
    and the duplicates of positives it met before its candidate list was full."""

    candidates: np.ndarray
    positive_ranks: dict[int, int]
    duplicates_met: frozenset[int]


def _source_hits(hits: np.ndarray, duplicates: set[int], positives: set[int], top_k: int) -> _SourceHits:
    kept: list[int] = []
    positive_ranks: dict[int, int] = {}
    met: set[int] = set()
    for rank, doc in enumerate(hits.tolist(), start=1):
        if doc < 0 or len(kept) >= top_k:
            break
        if doc in positives:
            positive_ranks[doc] = rank
        elif doc in duplicates:
            met.add(doc)
        else:
            kept.append(doc)
    return _SourceHits(np.array(kept, dtype=np.int64), positive_ranks, frozenset(met))


@dataclass(frozen=True)
class PoolRows:
    """The pool's rows for a run of queries before scoring (positions, provenance, fused rank) and what building
    them dropped. `pool_rows` makes them; `frame` turns them into the POOL_COLUMNS table."""

    query_idx: np.ndarray
    doc_idx: np.ndarray
    is_positive: np.ndarray
    ranks: dict[str, np.ndarray]
    fused_rank: np.ndarray
    found_by: dict[str, int]
    dropped_positive_ids: int
    dropped_positive_duplicates: int

    def frame(self, collection: Collection, *, bm25_score: np.ndarray | None = None,
              dense_score: np.ndarray | None = None, pos_sim_max: np.ndarray | None = None,
              cluster: np.ndarray | None = None) -> pd.DataFrame:
        """The rows as a POOL_COLUMNS table; scores not given are NaN, clusters -1, teacher columns NaN."""
        n = len(self.query_idx)
        frame = pd.DataFrame({
            "query_id": pd.array(np.asarray(collection.query_ids, dtype=object)[self.query_idx], dtype="string"),
            "doc_id": pd.array(np.asarray(collection.doc_ids, dtype=object)[self.doc_idx], dtype="string"),
            "is_positive": self.is_positive,
        })
        missing = np.full(n, np.nan, np.float32)
        for name, score in (("bm25", bm25_score), ("dense", dense_score)):
            frame[f"in_{name}"] = self.ranks[name] > 0
            frame[f"{name}_rank"] = self.ranks[name]
            frame[f"{name}_score"] = missing if score is None else score.astype(np.float32)
        frame["fused_rank"] = self.fused_rank
        frame["pos_sim_max"] = missing if pos_sim_max is None else pos_sim_max
        frame["cluster"] = np.full(n, -1, np.int32) if cluster is None else cluster
        frame["teacher_raw"] = missing
        frame["teacher_score"] = missing
        return frame.astype(POOL_COLUMNS)[list(POOL_COLUMNS)]


def pool_rows(found: dict[str, np.ndarray], positives: Sequence[np.ndarray], duplicates: Sequence[np.ndarray],
              top_k: int, *, first_query: int = 0) -> PoolRows:
    """Assemble the rows of queries first_query, first_query + 1, ... query by query: positives first, then the
    candidates by fused rank. `found[source][i]` is that source's ranked document indices for the i-th of these
    queries (-1: nothing found); `positives` / `duplicates` (from `excluded_docs`) are sliced to the same queries.
    A query's rows depend on its own hits alone, so any split of the queries gives the same rows."""
    hits = {name: [_source_hits(rows[q], set(duplicates[q].tolist()), set(positives[q].tolist()), top_k)
                   for q in range(len(positives))] for name, rows in found.items()}
    q_rows: list[np.ndarray] = []
    d_rows: list[np.ndarray] = []
    is_pos: list[np.ndarray] = []
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in _SOURCES}
    fused: list[np.ndarray] = []
    found_by: dict[str, int] = {}
    dropped_ids = dropped_dups = 0
    for q, pos in enumerate(positives):
        cand_rank: dict[str, dict[int, int]] = {}
        for name, per_query in hits.items():
            h = per_query[q]
            cand_rank[name] = {int(d): r for r, d in enumerate(h.candidates.tolist(), start=1)}
        union = sorted(set().union(*[set(r) for r in cand_rank.values()])) if cand_rank else []
        rrf = np.array([sum(1.0 / (_RRF_K + r[d]) for r in cand_rank.values() if d in r) for d in union])
        best = np.array([min((r[d] for r in cand_rank.values() if d in r)) for d in union], dtype=np.int64)
        order = np.lexsort((np.array(union, dtype=np.int64), best, -rrf)) if union else np.array([], dtype=np.int64)
        cands = np.array(union, dtype=np.int64)[order]
        docs = np.concatenate([pos, cands])
        q_rows.append(np.full(len(docs), first_query + q, dtype=np.int64))
        d_rows.append(docs)
        is_pos.append(np.r_[np.ones(len(pos), bool), np.zeros(len(cands), bool)])
        fused.append(np.r_[np.zeros(len(pos), np.int32), np.arange(1, len(cands) + 1, dtype=np.int32)])
        for name in _SOURCES:
            if name not in hits:
                ranks[name].append(np.zeros(len(docs), np.int32))
                continue
            pr = hits[name][q].positive_ranks
            cr = cand_rank[name]
            ranks[name].append(np.array([pr.get(int(d), 0) for d in pos] + [cr.get(int(d), 0) for d in cands],
                                        dtype=np.int32))
        for d in cands.tolist():
            key = "+".join(name for name in _SOURCES if name in cand_rank and d in cand_rank[name])
            found_by[key] = found_by.get(key, 0) + 1
        dropped_ids += len(set().union(*[per_query[q].positive_ranks for per_query in hits.values()]))
        dropped_dups += len(frozenset().union(*[per_query[q].duplicates_met for per_query in hits.values()]))

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype)

    return PoolRows(joined(q_rows, np.int64), joined(d_rows, np.int64), joined(is_pos, bool),
                    {name: joined(r, np.int32) for name, r in ranks.items()}, joined(fused, np.int32), found_by,
                    dropped_ids, dropped_dups)


def pool_stats(n_queries: int, frame: pd.DataFrame, parts: Sequence[PoolRows]) -> PoolStats:
    """The PoolStats of a pool table built from `parts` (one per run of queries)."""
    found_by: dict[str, int] = {}
    for part in parts:
        for key, n in part.found_by.items():
            found_by[key] = found_by.get(key, 0) + n
    return PoolStats(
        n_queries=n_queries,
        n_candidates=int((~frame["is_positive"]).sum()),
        n_positive_rows=int(frame["is_positive"].sum()),
        dropped_positive_ids=sum(part.dropped_positive_ids for part in parts),
        dropped_positive_duplicates=sum(part.dropped_positive_duplicates for part in parts),
        found_by=found_by,
    )


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


def prepare_retrieval(
    collection: Collection,
    params: PoolParams,
    *,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    doc_embeddings: str | Path | None = None,
    query_embeddings: str | Path | None = None,
    progress: Progress = no_progress,
) -> tuple[Retrieval, dict[str, Any]]:
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


_POOL_FILES = ("pool.parquet", "corpus.parquet", "queries.parquet", "positives.parquet", "manifest.json")


def save_pool(pool: Pool, out_dir: str | Path, *, overwrite: bool = False, inputs: Sequence[str | Path] = (),
              write_frame: Callable[[pd.DataFrame, Path], None] | None = None) -> Path:
    """Write the pool folder (see docs/ARCHITECTURE.md). It is written beside `out_dir` and renamed into place, so an
    interrupted save never leaves half a pool. overwrite / inputs: as for `export` (see hnm_core.export.outdir).
    write_frame: writes pool.parquet instead of one file (the Ray engine writes a folder of parts, which load_pool
    reads as one table)."""
    from ..export.outdir import write_output

    c = pool.collection
    positives = [(q, d) for q in c.query_ids for d in c.positives[q]]
    tables = {
        "pool.parquet": pool.frame,
        "corpus.parquet": pd.DataFrame({"doc_id": pd.array(c.doc_ids, dtype="string"),
                                        "text": pd.array(c.doc_texts, dtype="string")}),
        "queries.parquet": pd.DataFrame({"query_id": pd.array(c.query_ids, dtype="string"),
                                         "text": pd.array(c.query_texts, dtype="string")}),
        "positives.parquet": pd.DataFrame(positives, columns=["query_id", "doc_id"]).astype("string"),
    }
    manifest = {**pool.meta, "collection": {**pool.meta.get("collection", {}), "problems": list(c.problems)}}
    with write_output(out_dir, "pool", overwrite=overwrite, inputs=inputs) as tmp:
        for name, table in tables.items():
            if name == "pool.parquet" and write_frame is not None:
                write_frame(table, tmp / name)
            else:
                table.to_parquet(tmp / name, index=False)
        write_json(tmp / "manifest.json", manifest)
    return Path(out_dir).expanduser()


def load_pool(folder: str | Path) -> Pool:
    """Read a pool folder written by `save_pool` (or an export's pool). Embeddings come back from the cache when it
    still holds them. A damaged file (truncated, hand-edited) raises DataError naming it."""
    import json

    from ..errors import DataError

    folder = Path(folder)
    missing = [name for name in _POOL_FILES if not (folder / name).exists()]
    if missing:
        raise DataError(folder, f"not a pool folder (missing {', '.join(missing)}).",
                        fix="point at a folder written by `hnm pool` or `hnm mine`")
    rebuild = "rebuild the pool with `hnm pool` (or `hnm mine`), or point at an intact copy"
    manifest = folder / "manifest.json"
    try:
        meta = json.loads(manifest.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError covers bad UTF-8 and bad JSON
        raise DataError(manifest, f"cannot be read ({one_line(error)})", fix=rebuild) from None
    if not isinstance(meta, dict):
        raise DataError(manifest, f"holds a JSON {type(meta).__name__}, not an object", fix=rebuild)
    sections = ("settings", "collection", "stats", "embeddings", "model", "teacher")
    wrong = [key for key in sections if key in meta and not isinstance(meta[key], dict)]
    if wrong:
        raise DataError(manifest, f"is not a manifest written by hnm ({', '.join(wrong)} should be a JSON object)",
                        fix=rebuild)
    emb = meta.get("embeddings")
    if emb and not all(isinstance(emb.get(key), str) for key in ("cache_dir", "docs", "queries")):
        raise DataError(manifest, "'embeddings' lacks cache_dir, docs or queries", fix=rebuild)
    frame = _read_table(folder / "pool.parquet", tuple(POOL_COLUMNS), rebuild)
    columns = {**POOL_COLUMNS, **{name: t for name, t in MEMBER_COLUMNS.items() if name in frame.columns}}
    try:
        frame = frame.astype(columns)[list(columns)]
    except (TypeError, ValueError) as error:
        raise DataError(folder / "pool.parquet", f"has columns of the wrong type ({one_line(error)})",
                        fix=rebuild) from None
    corpus = _read_table(folder / "corpus.parquet", ("doc_id", "text"), rebuild)
    queries = _read_table(folder / "queries.parquet", ("query_id", "text"), rebuild)
    positives = _read_table(folder / "positives.parquet", ("query_id", "doc_id"), rebuild)
    grouped: dict[str, tuple[str, ...]] = {}
    for qid, did in zip(positives["query_id"].tolist(), positives["doc_id"].tolist()):
        grouped[qid] = grouped.get(qid, ()) + (did,)
    info = meta.get("collection", {})
    collection = Collection(
        name=info.get("name", folder.name),
        doc_ids=tuple(corpus["doc_id"].tolist()),
        doc_texts=tuple(corpus["text"].tolist()),
        query_ids=tuple(queries["query_id"].tolist()),
        query_texts=tuple(queries["text"].tolist()),
        positives=grouped,
        problems=tuple(info.get("problems", ())),
        source=info.get("source", str(folder)),
    )
    stats_fields = {k: v for k, v in meta.get("stats", {}).items() if k in PoolStats.__dataclass_fields__}
    stats = PoolStats(**stats_fields) if stats_fields else PoolStats(
        len(collection.query_ids), int((~frame["is_positive"]).sum()), int(frame["is_positive"].sum()), 0, 0)
    doc_emb = query_emb = None
    if emb:
        cache = EmbeddingCache(emb["cache_dir"])
        doc_emb = cache.get(emb["docs"], len(collection.doc_ids))
        query_emb = cache.get(emb["queries"], len(collection.query_ids))
    return Pool(frame, collection, stats, meta, doc_emb, query_emb)


def _read_table(path: Path, columns: tuple[str, ...], fix: str) -> pd.DataFrame:
    """One Parquet file of a pool folder, with the columns it must have; DataError naming it otherwise."""
    import pyarrow as pa

    from ..errors import DataError

    try:
        table = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as error:  # truncated, not Parquet at all, unreadable
        raise DataError(path, f"is not a readable Parquet file ({one_line(error)})", fix=fix) from None
    absent = missing_columns(table, columns)
    if absent:
        raise DataError(path, f"lacks columns {', '.join(absent)}.", fix=fix)
    return table


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
