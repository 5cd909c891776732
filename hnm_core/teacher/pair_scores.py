"""Cross-encoder scores of (query, document) pairs in batches fixed by the pool, cached and resumable.

Which pairs share a batch decides their padding, the shapes of the model's matrices and so the last bits of every
score (in bf16 most of all). So the batches are a function of the pairs asked for and nothing else: the pairs of
each block of QUERY_BLOCK consecutive queries (by their index in the collection), longest first (ties in the order
given), cut every `batch_size`. A block's batches are the same whether the whole pool is scored at once or by one
partition of the Ray engine (whose partitions hold whole blocks), whatever the machine's load, and after any resume.
Blocks of many queries rather than one query each keep batches full and of like lengths: on the sample's 878 pairs
(28 queries) one-query batches scored 28 pairs/s against 38 for 256-pair calls sorted by length (bench_teacher.py). A cached score is keyed by its pair *and* by the pairs of its batch, so a score computed beside
other companions (another top-N, another pool) is never taken for this one: the same command gives the same bytes
whatever else the cache holds. The price: a query whose scored pairs change (a larger top-N) is scored again.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from ..cache import ChunkPacer, PairScoreCache, pair_keys
from ..errors import ModelOutputError
from ..models.loading import LoadedModel
from ..progress import Progress
from ..wording import counted

__all__ = ["QUERY_BLOCK", "pair_batches", "batch_pair_keys", "pair_scores"]

QUERY_BLOCK = 32
"""Queries whose pairs are batched together (about a thousand pairs at the default top 30)."""


def pair_batches(groups: np.ndarray, lengths: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, batch): the rows in scoring order (by group, then longest first, then as given) and, for each row of
    that order, the number of its batch. A batch holds rows of one group only, `batch_size` at most."""
    n = len(groups)
    order = np.lexsort((np.arange(n), -np.asarray(lengths, dtype=np.int64), np.asarray(groups)))
    sorted_groups = np.asarray(groups)[order]
    first = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]] if n else np.empty(0, dtype=bool)
    starts = np.flatnonzero(first)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    batch = np.cumsum(rank % max(1, batch_size) == 0) - 1
    return order, batch


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 64-bit hash of two uint64 arrays, element-wise (splitmix64's finaliser over a ^ rotated b)."""
    with np.errstate(over="ignore"):
        x = a ^ ((b << np.uint64(31)) | (b >> np.uint64(33)))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def batch_pair_keys(keys: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Cache keys of pairs scored in batches: each pair's key mixed with a digest of its batch's keys."""
    out = np.empty(len(keys), dtype=np.uint64)
    if not len(keys):
        return out
    bounds = np.flatnonzero(np.r_[True, batch[1:] != batch[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        digest = hashlib.blake2b(np.sort(keys[a:b]).tobytes(), digest_size=8).digest()
        out[a:b] = _mix(keys[a:b], np.full(b - a, int.from_bytes(digest, "little"), dtype=np.uint64))
    return out


def pair_scores(q_texts: np.ndarray, d_texts: np.ndarray, query_index: np.ndarray, model: LoadedModel, *,
                batch_size: int, cache_dir: str | Path | None, progress: Progress, stage: str,
                chunk: int = 256) -> np.ndarray:
    """Raw logits of the pairs (q_texts[i], d_texts[i]) under one cross-encoder, scored in the batches of
    pair_batches (`query_index`: each pair's query's index in the collection, whose QUERY_BLOCK decides its group),
    one predict call per batch. Batches whose scores are all cached are not scored again; the others are saved every
    `chunk` pairs or about five seconds of work, whichever comes first, so a killed run loses little."""
    lengths = np.array([len(q) + len(d) for q, d in zip(q_texts, d_texts)], dtype=np.int64)
    order, batch = pair_batches(np.asarray(query_index) // QUERY_BLOCK, lengths, batch_size)
    keys = batch_pair_keys(pair_keys(q_texts[order].tolist(), d_texts[order].tolist()), batch)
    cache = PairScoreCache(cache_dir, model.fingerprint)
    raw = cache.lookup(keys)
    todo = np.unique(batch[np.isnan(raw)])
    bounds = np.searchsorted(batch, np.arange(batch[-1] + 2)) if len(batch) else np.zeros(1, dtype=np.int64)
    total = int(sum(bounds[b + 1] - bounds[b] for b in todo))
    pacer = ChunkPacer(max_rows=chunk)
    progress(stage, 0, total)
    done = at = 0
    while at < len(todo):
        began, rows = time.perf_counter(), []
        while at < len(todo) and (not rows or sum(map(len, rows)) < pacer.rows):
            rows.append(np.arange(bounds[todo[at]], bounds[todo[at] + 1]))
            at += 1
        logits = np.concatenate([np.asarray(model.model.predict(
            [(q_texts[order[i]], d_texts[order[i]]) for i in part], batch_size=len(part), show_progress_bar=False,
            convert_to_numpy=True), dtype=np.float32).reshape(-1) for part in rows])
        scored = np.concatenate(rows)
        pacer.record(len(scored), time.perf_counter() - began)
        if not np.isfinite(logits).all():
            raise ModelOutputError(
                f"{model.name}: produced NaN or infinite scores for "
                f"{counted(int((~np.isfinite(logits)).sum()), 'pair')}; "
                "nothing of them was cached. Fix: check the model's weights, or run it in fp32 (--precision fp32).")
        cache.add(keys[scored], logits)
        done += len(scored)
        progress(stage, done, total)
    out = np.empty(len(keys), dtype=np.float32)
    out[order] = cache.lookup(keys)
    return out
