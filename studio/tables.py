"""The tables the pages show, as pure functions of a collection, a pool and a curation (pandas frames for
st.dataframe). Nothing here computes a label: labels come from hnm_core.curate.rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hnm_core.curate.reasons import reasons
from hnm_core.curate.rules import Curation
from hnm_core.data import Collection
from hnm_core.pool import Pool

__all__ = ["query_slices", "collection_summary", "positives_per_query", "query_preview", "label_counts",
           "short_queries", "query_change_table", "TABLE_ORDER", "candidate_table", "text_width", "documents_table",
           "DETAIL_COLUMNS", "score_card", "positives_of", "preview_rows"]


def query_slices(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """query id -> (first row, end row) in a pool frame (rows are grouped by query, see docs/ARCHITECTURE.md)."""
    codes, uniques = pd.factorize(frame["query_id"])
    if len(codes) == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    return {str(uniques[codes[s]]): (int(s), int(e)) for s, e in zip(starts, ends)}


def positives_per_query(collection: Collection) -> pd.DataFrame:
    """How many queries have 1, 2, ... labelled positives."""
    counts = pd.Series([len(collection.positives[q]) for q in collection.query_ids]).value_counts().sort_index()
    return pd.DataFrame({"positives per query": counts.index.astype(int), "queries": counts.to_numpy()})


def collection_summary(collection: Collection) -> dict[str, int | float]:
    """Headline numbers of a collection."""
    n_pos = [len(collection.positives[q]) for q in collection.query_ids]
    return {
        "documents": len(collection.doc_ids),
        "queries": len(collection.query_ids),
        "positives": int(sum(n_pos)),
        "mean positives per query": float(np.mean(n_pos)) if n_pos else 0.0,
        "given negatives": int(sum(len(v) for v in collection.negatives.values())),
    }


def label_counts(curation: Curation) -> pd.DataFrame:
    """One row per label: rows that got it, and rows its rule matched before precedence."""
    return pd.DataFrame([(rc.label, rc.count, rc.matched) for rc in curation.counts],
                        columns=["label", "rows", "matched"])


def short_queries(curation: Curation, collection: Collection) -> pd.DataFrame:
    """Queries whose hard band holds fewer negatives than the quota."""
    index = collection.query_index
    return pd.DataFrame(
        [(s.query_id, s.got, s.wanted, collection.query_texts[index[s.query_id]] if s.query_id in index else "")
         for s in curation.short_queries],
        columns=["query_id", "negatives", "wanted", "query"],
    )


def _sources(frame: pd.DataFrame) -> np.ndarray:
    bm25 = frame["in_bm25"].to_numpy(bool)
    dense = frame["in_dense"].to_numpy(bool)
    return np.select([bm25 & dense, bm25, dense], ["bm25+dense", "bm25", "dense"], default="")


def query_change_table(change: pd.DataFrame, collection: Collection) -> pd.DataFrame:
    """A query's negatives before and after (hnm_core.curate.selection.query_change) with each document's text."""
    texts = [collection.doc_texts[collection.doc_index[d]] for d in change["doc_id"].tolist()]
    return change.rename(columns={"label_after": "label now"}).assign(text=texts)


# The candidates table's groups, top to bottom: the query's positives (labelled, then yours), what is exported, the
# rest of the hard band, what a rule or a verdict took out, and what no rule could judge or wanted.
TABLE_ORDER: tuple[str, ...] = ("positive", "unlabelled_positive", "hard (selected)", "hard", "false_negative",
                                "near_duplicate", "same_cluster", "skipped", "bad_negative", "unscored", "easy")


def candidate_table(pool: Pool, curation: Curation, rows: tuple[int, int]) -> pd.DataFrame:
    """The rows `rows` (one query's slice) of the pool with their label, why (hnm_core.curate.reasons), sampling,
    provenance, every score and the document text: the Explore page's linked table. Ordered by label group
    (TABLE_ORDER), then by teacher score, highest first (unscored last), then by fused rank."""
    start, end = rows
    part = pool.frame.iloc[start:end]
    coll = pool.collection
    labels = np.asarray(curation.labels[start:end], dtype=object)
    selected = curation.selected[start:end]
    shown = np.where(selected, "hard (selected)", labels)
    table = pd.DataFrame({
        "doc_id": part["doc_id"].to_numpy(object),
        "label": shown,
        "reason": reasons(pool.frame, curation, rows),
        "teacher_score": part["teacher_score"].to_numpy(np.float32, na_value=np.nan),
        "neg_rank": curation.neg_rank[start:end],
        "fused_rank": part["fused_rank"].to_numpy(),
        "text": [coll.doc_texts[coll.doc_index[d]] for d in part["doc_id"].tolist()],
        "sources": _sources(part),
        "bm25_rank": part["bm25_rank"].to_numpy(),
        "dense_rank": part["dense_rank"].to_numpy(),
        "teacher_raw": part["teacher_raw"].to_numpy(np.float32, na_value=np.nan),
        "dense_score": part["dense_score"].to_numpy(np.float32, na_value=np.nan),
        "bm25_score": part["bm25_score"].to_numpy(np.float32, na_value=np.nan),
        "pos_sim_max": part["pos_sim_max"].to_numpy(np.float32, na_value=np.nan),
        "cluster": part["cluster"].to_numpy(),
    })
    group = table["label"].map({label: i for i, label in enumerate(TABLE_ORDER)}).to_numpy()
    score = np.nan_to_num(-table["teacher_score"].to_numpy(), nan=np.inf)  # highest first, unscored last
    order = np.lexsort((table["fused_rank"].to_numpy(), score, group))
    return table.iloc[order].reset_index(drop=True)


def text_width(values: pd.Series, *, lo: int = 200, hi: int = 640) -> int:
    """Pixels for a table column to show `values` whole (about 7 px a character at the table's font), between `lo`
    and `hi`."""
    longest = int(values.astype(str).str.len().max()) if len(values) else 0
    return max(lo, min(hi, 7 * longest + 24))


def query_preview(collection: Collection, n: int = 5) -> pd.DataFrame:
    """The first `n` queries with their labelled positives, one row per (query, positive)."""
    rows = [(q, collection.query_texts[i], d, collection.doc_texts[collection.doc_index[d]])
            for i, q in enumerate(collection.query_ids[:n]) for d in collection.positives[q]]
    return pd.DataFrame(rows, columns=["query_id", "query", "doc_id", "positive"])


# The scores and ranks of a candidate, in the order the detail panel and the lasso table show them.
DETAIL_COLUMNS: tuple[str, ...] = ("teacher_score", "teacher_raw", "dense_score", "bm25_score", "pos_sim_max",
                                   "fused_rank", "bm25_rank", "dense_rank", "neg_rank", "cluster", "sources")
_RANKS = ("fused_rank", "bm25_rank", "dense_rank", "neg_rank")


def documents_table(collection: Collection, doc_rows: list[int], candidates: pd.DataFrame) -> pd.DataFrame:
    """Documents by position in the collection (a map selection), with the label, reason, scores and ranks
    `candidates` (the chosen query's candidate_table) gives them; documents outside the query's pool are "corpus",
    unscored (NaN) and unranked (0)."""
    by_doc = candidates.set_index(candidates["doc_id"].map(collection.doc_index)).reindex(doc_rows)
    out = pd.DataFrame({
        "doc_id": [collection.doc_ids[i] for i in doc_rows],
        "label": by_doc["label"].fillna("corpus").to_numpy(object),
        "reason": by_doc["reason"].fillna("not in this query's pool").to_numpy(object),
    })
    for name in DETAIL_COLUMNS:
        column = by_doc[name]
        if name in _RANKS:
            column = column.fillna(0).astype(np.int64)
        elif name == "sources":
            column = column.fillna("")
        out[name] = column.to_numpy()
    out["text"] = [collection.doc_texts[i] for i in doc_rows]
    return out


def score_card(candidate: pd.Series) -> pd.DataFrame:
    """One candidate_table row as a two-column table (measure, value) of every score and rank, for the detail
    panel: scores to three decimals ("not computed" for NaN), ranks as integers ("not ranked" for 0)."""
    values = []
    for name in DETAIL_COLUMNS:
        value = candidate[name]
        if name in _RANKS:
            values.append("not ranked" if value == 0 else f"{int(value):,}")
        elif name in ("cluster", "sources"):
            values.append(str(value) if value not in (-1, "") else "none")
        else:
            values.append("not computed" if pd.isna(value) else f"{float(value):.3f}")
    return pd.DataFrame({"measure": DETAIL_COLUMNS, "value": values})


def positives_of(pool: Pool, rows: tuple[int, int]) -> pd.DataFrame:
    """The labelled positives of the query whose pool slice is `rows`: doc_id, teacher score, text."""
    start, end = rows
    part = pool.frame.iloc[start:end]
    part = part[part["is_positive"].to_numpy(bool)]
    coll = pool.collection
    return pd.DataFrame({
        "doc_id": part["doc_id"].to_numpy(object),
        "teacher_score": part["teacher_score"].to_numpy(np.float32, na_value=np.nan),
        "text": [coll.doc_texts[coll.doc_index[d]] for d in part["doc_id"].tolist()],
    })


def preview_rows(path: Path, n: int = 5) -> pd.DataFrame:
    """The first `n` rows of an exported Parquet or JSONL file, read without loading the whole file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
        return batch.to_pandas() if batch is not None else pd.DataFrame()
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(records) == n:
                break
            records.append(json.loads(line))
    return pd.DataFrame(records)
