"""The audit's measurement: hide some labelled positives, then count how many a curation exports as negatives.

`hide_positives` picks the hidden positives (seeded, per query), `hidden_rows` finds them in a pool mined without
them, and `audit_figures` measures one curation of that pool (definitions in hnm_core.audit.report and docs/audit.md).
Pure functions: nothing here mines, scores or writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..curate.margins import positive_like_share
from ..curate.rules import LABELS, Curation
from ..data import Collection, normalize_text
from ..errors import DataError, SettingsError
from ..settings import setting
from ..wording import counted

__all__ = ["CAUGHT_LABELS", "HiddenSplit", "hide_positives", "hidden_rows", "hidden_share", "AuditFigures",
           "audit_figures"]


CAUGHT_LABELS: tuple[str, ...] = ("false_negative", "near_duplicate", "same_cluster")
"""Labels that count as the rules catching a hidden positive (skipped / easy / unscored rows are not caught: they
are dropped for other reasons and would leak under other settings)."""


@dataclass(frozen=True)
class HiddenSplit:
    """Which labelled positives an audit hides. `visible` holds every query's positives minus the hidden ones (at
    least one each); `hidden` holds only the audited queries (those with at least two positives)."""

    hide: float
    seed: int
    visible: dict[str, tuple[str, ...]]
    hidden: dict[str, tuple[str, ...]]

    @property
    def n_hidden(self) -> int:
        """Hidden positives, all queries together."""
        return sum(len(docs) for docs in self.hidden.values())

    @property
    def n_audited(self) -> int:
        """Queries with at least one hidden positive."""
        return len(self.hidden)

    def apply(self, collection: Collection) -> Collection:
        """`collection` with only the visible positives labelled: what the audit mines."""
        return dataclasses.replace(collection, positives=dict(self.visible),
                                   source=f"{collection.source} (audit: {self.n_hidden:,} positives hidden, "
                                          f"hide {self.hide:g}, seed {self.seed})")

    def to_frame(self) -> pd.DataFrame:
        """query_id, doc_id of the hidden positives (what `save_report` writes as hidden_positives.csv)."""
        rows = [(q, d) for q, docs in self.hidden.items() for d in docs]
        return pd.DataFrame(rows, columns=["query_id", "doc_id"]).astype("string")


def hide_positives(collection: Collection, *, hide: float = setting("hide").default,
                   seed: int = setting("seed").default) -> HiddenSplit:
    """Hide round(hide * n) of the n positives of every query with n >= 2 (at least 1, at most n - 1).

    Which ones is decided per (seed, query id, doc id) by a hash, not by a random stream, so the split of a query
    does not depend on the order or number of the other queries: the same seed hides the same positives in a
    collection and in any subset of it.
    """
    if isinstance(hide, bool) or not isinstance(hide, (int, float)) or not 0.0 < hide < 1.0:
        raise SettingsError(f"hide: {hide!r} must be a fraction strictly between 0 and 1 (e.g. 0.5)")
    seed = setting("seed").check(seed)
    visible: dict[str, tuple[str, ...]] = {}
    hidden: dict[str, tuple[str, ...]] = {}
    for qid in collection.query_ids:
        docs = collection.positives[qid]
        n = len(docs)
        if n < 2:
            visible[qid] = tuple(docs)
            continue
        k = min(n - 1, max(1, math.floor(hide * n + 0.5)))  # round half up: 3 positives at 0.5 hide 2
        order = sorted(range(n), key=lambda i: _split_key(seed, qid, docs[i]))
        chosen = set(order[:k])
        hidden[qid] = tuple(d for i, d in enumerate(docs) if i in chosen)
        visible[qid] = tuple(d for i, d in enumerate(docs) if i not in chosen)
    return HiddenSplit(hide=float(hide), seed=seed, visible=visible, hidden=hidden)


def _split_key(seed: int, query_id: str, doc_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{query_id}\x00{doc_id}".encode(), digest_size=8).digest()


def hidden_rows(frame: pd.DataFrame, collection: Collection, split: HiddenSplit) -> np.ndarray:
    """Boolean mask aligned with `frame`: the row's document is one of its query's hidden positives, or has the
    same normalised text as one (the pool builder treats such duplicates as the same document)."""
    by_text: dict[str, list[str]] = {}
    hidden_texts = {normalize_text(collection.doc_texts[collection.doc_index[d]])
                    for docs in split.hidden.values() for d in docs}
    for doc_id, text in zip(collection.doc_ids, collection.doc_texts):
        norm = normalize_text(text)
        if norm in hidden_texts:
            by_text.setdefault(norm, []).append(doc_id)
    keys = {f"{qid}\x1f{same}" for qid, docs in split.hidden.items() for d in docs
            for same in by_text[normalize_text(collection.doc_texts[collection.doc_index[d]])]}
    if not keys or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    row_keys = frame["query_id"].astype(str) + "\x1f" + frame["doc_id"].astype(str)
    return row_keys.isin(keys).to_numpy(dtype=bool)


@dataclass(frozen=True)
class AuditFigures:
    """The audit's figures for one curation (see the module docstring and docs/audit.md for the definitions).

    Rates are NaN where their denominator is 0 (no negative exported, no hidden positive in the pool).
    `hidden_labels` counts the label each hidden positive in the pool got.
    """

    leak_rate: float
    hidden_caught: float
    hidden_exported: float
    mean_teacher: float
    mean_dense_rank: float
    dense_found: float
    coverage: float
    n_selected: int
    n_leaked: int
    n_hidden: int
    n_hidden_in_pool: int
    n_caught: int
    n_queries: int
    n_full_quota: int
    hidden_labels: dict[str, int]

    def sentences(self) -> list[str]:
        """Human lines for the CLI and the app."""
        return [
            f"Leak: {percent(self.leak_rate)} of the {counted(self.n_selected, 'exported negative')} are hidden "
            f"positives ({self.n_leaked:,}).",
            f"Caught: {percent(self.hidden_caught)} of the {counted(self.n_hidden_in_pool, 'hidden positive')} in the "
            f"pool were labelled {' / '.join(CAUGHT_LABELS)} ({self.n_caught:,}); {percent(self.hidden_exported)} of "
            f"all {counted(self.n_hidden, 'hidden positive')} were exported as negatives.",
            f"Hardness: mean teacher score {self.mean_teacher:.3f}; mean dense rank {self.mean_dense_rank:.1f} over "
            f"the {percent(self.dense_found)} of negatives in the dense top-K.",
            f"Coverage: {self.n_full_quota:,} of {counted(self.n_queries, 'query', 'queries')} "
            f"({percent(self.coverage)}) got their full "
            "quota of negatives.",
        ]


def percent(value: float) -> str:
    """A rate as a percentage with one decimal, "n/a" when it has no denominator (NaN)."""
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def audit_figures(frame: pd.DataFrame, hidden: np.ndarray, curation: Curation, *, n_hidden: int) -> AuditFigures:
    """The figures of `curation` (of `frame`), with `hidden` the mask from `hidden_rows` and `n_hidden` the number
    of hidden positives (`HiddenSplit.n_hidden`), which includes those the pool never retrieved."""
    if len(hidden) != len(frame) or len(curation.selected) != len(frame):
        raise DataError("audit", f"the frame has {len(frame):,} rows, the hidden mask {len(hidden):,} and the "
                                 f"curation {len(curation.selected):,}.",
                        fix="compute the mask and the curation on the same pool frame")
    selected = curation.selected
    codes = np.asarray(curation.labels.codes)
    hidden_codes = codes[hidden]
    label_counts = np.bincount(hidden_codes, minlength=len(LABELS))
    caught = int(sum(label_counts[LABELS.index(label)] for label in CAUGHT_LABELS))
    leaked = int((selected & hidden).sum())
    n_selected = int(selected.sum())
    n_in_pool = int(hidden.sum())
    scores = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)[selected]
    dense = frame["dense_rank"].to_numpy(dtype=np.int64)[selected]
    found = dense[dense > 0]
    return AuditFigures(
        leak_rate=_ratio(leaked, n_selected),
        hidden_caught=_ratio(caught, n_in_pool),
        hidden_exported=_ratio(leaked, n_hidden),
        mean_teacher=float(np.nanmean(scores)) if len(scores) and not np.isnan(scores).all() else math.nan,
        mean_dense_rank=float(found.mean()) if len(found) else math.nan,
        dense_found=_ratio(len(found), n_selected),
        coverage=_ratio(curation.n_full_quota, curation.n_queries),
        n_selected=n_selected,
        n_leaked=leaked,
        n_hidden=n_hidden,
        n_hidden_in_pool=n_in_pool,
        n_caught=caught,
        n_queries=curation.n_queries,
        n_full_quota=curation.n_full_quota,
        hidden_labels={label: int(label_counts[i]) for i, label in enumerate(LABELS) if label_counts[i]},
    )


def hidden_share(frame: pd.DataFrame, hidden: np.ndarray) -> float:
    """The `positive_like_share` that margin_ref "auto" chooses by on an audit's pool: with its `hidden` positives
    counted as positives again, as on the collection the audit stands for (curate it with `auto_share=` this)."""
    return positive_like_share(frame, frame["is_positive"].to_numpy(dtype=bool) | hidden)
