"""The pool table's schema: the one interface between the pool builder, the teacher, curation, the audit, export
and the studio. Column meanings are in docs/ARCHITECTURE.md. Rows are grouped by query, positives first.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .errors import DataError

__all__ = ["RANK_MEANINGS", "POOL_COLUMNS", "MEMBER_COLUMNS", "SCORE_COLUMNS", "CURATE_COLUMNS", "LABELLED_COLUMNS", "ROUND_COLUMNS",
           "missing_columns", "require_columns"]

POOL_COLUMNS: dict[str, str] = {
    "query_id": "string",
    "doc_id": "string",
    "is_positive": "bool",
    "in_bm25": "bool",
    "bm25_rank": "int32",
    "bm25_score": "float32",
    "in_dense": "bool",
    "dense_rank": "int32",
    "dense_score": "float32",
    "fused_rank": "int32",
    "pos_sim_max": "float32",
    "cluster": "int32",
    "teacher_raw": "float32",
    "teacher_score": "float32",
}
"""Column -> pandas dtype, in the order the pool table has them."""

MEMBER_COLUMNS: dict[str, str] = {
    "teacher_cross_encoder": "float32",
    "teacher_dense": "float32",
    "teacher_bm25": "float32",
}
"""Optional columns after POOL_COLUMNS: an ensemble teacher's members' own scores (a logit, a cosine, a BM25 score;
NaN where the ensemble did not score the row), present only in a pool an ensemble scored (hnm_core.teacher.scoring)."""

RANK_MEANINGS: dict[str, str] = {
    "bm25_rank": "1-based rank among the query's BM25 results; candidates are ranked among non-positive documents only "
                 "(rank 1 = the most BM25-similar non-positive), positives among all documents. "
                 "0 = not ranked: outside the top-K",
    "dense_rank": "as `bm25_rank`, for the dense ranking. 0 = not ranked: outside the top-K",
    "fused_rank": "candidates: rank by reciprocal-rank fusion of the sources (RRF, k=60), 1 = best. "
                  "0 = not ranked: a positive (positives are not fused; their ranks are in `bm25_rank` and "
                  "`dense_rank`)",
}
"""What each rank column means. Every rank starts at 1 and 0 always means "not ranked in this list" (never a rank
or a label), so a reader need not know which column treats positives how; docs/ARCHITECTURE.md and the studio's
table headers quote these."""

SCORE_COLUMNS: tuple[str, ...] = tuple(name for name, dtype in POOL_COLUMNS.items() if dtype == "float32")
"""The float columns: NaN where the score was not computed (no BM25 match, no dense run, not scored)."""

CURATE_COLUMNS: tuple[str, ...] = (
    "query_id", "doc_id", "is_positive", "bm25_rank", "dense_rank", "fused_rank", "pos_sim_max", "cluster",
    "teacher_score",
)
"""The columns `curate` reads: a frame with these (any extra ones are ignored) can be curated."""

LABELLED_COLUMNS: dict[str, str] = {
    "label": "string",
    "selected": "bool",
    "neg_rank": "int32",
    "reason": "string",
}
"""What the export's `pool` format adds to POOL_COLUMNS: the curation's label, whether the row was sampled as a
negative, its rank among the query's negatives (0 = not sampled), why it got its label (hnm_core.curate.reasons:
the rule that fired, with its numbers). Texts are not repeated per row: join them by id."""

ROUND_COLUMNS: tuple[str, ...] = ("query_id", "doc_id", "label", "selected")
"""The columns of a labelled pool that round comparison (hnm_core.prove.rounds) reads."""


def missing_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The names in `columns` that `frame` lacks, in order."""
    return [name for name in columns if name not in frame.columns]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], where: str | Path, fix: str) -> None:
    """Raise DataError naming `where` and `fix` unless `frame` has every one of `columns`."""
    missing = missing_columns(frame, columns)
    if missing:
        raise DataError(where, f"missing columns {', '.join(missing)}.", fix=fix)
