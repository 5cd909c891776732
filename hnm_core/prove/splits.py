"""Which queries a proof trains on, selects on and scores on: the collection's own splits, or seeded splits of one
labelled set's queries (`split_queries`, `select_queries`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data import Collection, beir_splits, load_collection, normalize_text
from ..errors import SettingsError

__all__ = ["shared_queries", "without_queries", "only_queries", "scoring_splits", "selection_splits", "split_queries",
           "fold_queries", "QuerySplit", "source_split"]


def shared_queries(train: Collection, test: Collection) -> frozenset[str]:
    """The ids of `train`'s queries that `test` holds too (matched by normalised text: ids may differ between splits;
    BEIR's SciFact shares 2 of its 300 test queries with its train split, NFCorpus 4 of 323)."""
    seen = {normalize_text(text) for text in test.query_texts}
    return frozenset(qid for qid, text in zip(train.query_ids, train.query_texts) if normalize_text(text) in seen)


def without_queries(collection: Collection, query_ids: frozenset[str]) -> Collection:
    """`collection` less the queries `query_ids` (and their labels)."""
    keep = [i for i, qid in enumerate(collection.query_ids) if qid not in query_ids]
    return replace(collection, query_ids=tuple(collection.query_ids[i] for i in keep),
                   query_texts=tuple(collection.query_texts[i] for i in keep),
                   positives={q: d for q, d in collection.positives.items() if q not in query_ids},
                   negatives={q: d for q, d in collection.negatives.items() if q not in query_ids})


def only_queries(collection: Collection, query_ids: frozenset[str]) -> Collection:
    """`collection` with the queries `query_ids` only (and their labels)."""
    return without_queries(collection, frozenset(collection.query_ids) - query_ids)


def scoring_splits(data: str | Path, train_split: str) -> list[str]:
    """The qrels splits of the BEIR folder `data` a proof that trains on `train_split` may score on: every other split
    that leaves `train_split` some query of its own (the queries they share are left out of training)."""
    splits = beir_splits(data)
    if train_split not in splits:
        return []
    train = load_collection(data, split=train_split)
    return [name for name in splits if name != train_split
            and len(shared_queries(train, load_collection(data, split=name))) < len(train.query_ids)]


def selection_splits(data: str | Path, train_split: str, test_split: str) -> list[str]:
    """The qrels splits of the BEIR folder `data` a proof training on `train_split` and scoring on `test_split` may
    select a variant on: the others that hold none of the test queries and leave the training split some queries."""
    splits = beir_splits(data)
    if train_split not in splits or test_split not in splits:
        return []
    train, test = load_collection(data, split=train_split), load_collection(data, split=test_split)
    out = []
    for name in splits:
        if name in (train_split, test_split):
            continue
        select = load_collection(data, split=name)
        if not shared_queries(select, test) and len(shared_queries(train, select)) < len(train.query_ids):
            out.append(name)
    return out


def source_split(data: str | Path, train_split: str) -> str:
    """The split whose queries `split_queries` divides: `train_split`, or the one split of a folder without it (a
    collection with a single qrels.tsv, read as "test"). Not a BEIR folder (a pairs file): `train_split` as given."""
    if not Path(data).is_dir():
        return train_split
    splits = beir_splits(data)
    if train_split in splits or not splits:
        return train_split
    if len(splits) == 1:
        return next(iter(splits))
    raise SettingsError(f"{data} has no split {train_split!r} to divide (it has {', '.join(splits)}). Fix: pass "
                        f"--train-split with one of them")


@dataclass(frozen=True)
class QuerySplit:
    """Two disjoint sets of query ids drawn from one labelled set."""

    kept: frozenset[str]  # trained on (or, for the selection split, the training queries left)
    held_out: frozenset[str]  # scored on
    fraction: float
    seed: int


def _judged(collection: Collection, parts: int) -> list[str]:
    """`collection`'s judged query ids, sorted; refused when fewer than `parts` (each part needs one)."""
    judged = sorted(q for q in collection.query_ids if collection.positives.get(q))
    if len(judged) < parts:
        raise SettingsError(f"{collection.name} has {len(judged)} judged queries: splitting them into {parts} needs "
                            f"{parts} or more. Fix: prove on a collection with more labelled queries")
    return judged


def split_queries(collection: Collection, fraction: float, seed: int) -> QuerySplit:
    """A seeded split of `collection`'s judged queries: round(fraction * n) of them, at least one and leaving at
    least one, are held out. The draw depends on the sorted query ids and the seed alone, so the same collection
    and seed give the same split on any machine."""
    judged = _judged(collection, 2)
    if not 0.0 < fraction < 1.0:
        raise SettingsError(f"split fraction {fraction!r} must lie strictly between 0 and 1. Fix: pass e.g. 0.5")
    n_out = min(len(judged) - 1, max(1, round(fraction * len(judged))))
    order = np.random.default_rng(seed).permutation(len(judged))
    held = frozenset(judged[i] for i in order[:n_out])
    return QuerySplit(frozenset(judged) - held, held, fraction, seed)


def fold_queries(collection: Collection, folds: int, seed: int) -> tuple[frozenset[str], ...]:
    """`collection`'s judged queries dealt into `folds` seeded folds of sizes that differ by one at most (a
    permutation by the seed, dealt in turn), for a cross-fitted proof. Like `split_queries`, the same collection and
    seed give the same folds on any machine."""
    judged = _judged(collection, folds)
    order = np.random.default_rng(seed).permutation(len(judged))
    return tuple(frozenset(judged[i] for i in order[k::folds]) for k in range(folds))
