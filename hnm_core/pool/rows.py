"""Row assembly: each retriever's hits for a block of queries, minus positives and duplicates of them, fused into the
pool table's rows with their provenance (ranks per source, fused rank), and the figures of the whole pool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import Collection, normalize_text
from ..retrieve.result import SearchResult
from ..schema import POOL_COLUMNS

if TYPE_CHECKING:
    pass
from .params import PoolStats

__all__ = ["excluded_docs", "fetch_depth", "bm25_found", "PoolRows", "pool_rows", "pool_stats"]


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
