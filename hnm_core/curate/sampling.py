"""How curate samples the negatives of each query's hard band: the order each strategy draws in (top-scored first,
uniform, SimANS), from seeded draws that depend on the row alone: a uniform per (seed, query id, doc id).

A draw does not depend on row order or on which other rows are in the hard band, so moving a slider only changes a
row's draw when it changes the row's band, and the same seed samples the same negatives in the app and the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from .rules import CurateParams

__all__ = ["row_uniforms", "sampling_order", "grouped_order", "best_first_key", "rank_in_groups"]

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_POLY = np.uint64(0x100000001B3)  # FNV-1 64-bit prime, an odd multiplier for the polynomial string hash


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: turns structured 64-bit integers into well-spread ones (wrapping uint64 maths)."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _string_hash(values: Any) -> np.ndarray:
    """A 64-bit hash of each string, vectorised over the Arrow bytes.

    pandas' hash_array runs about 50 ms per 100k strings, half the curation budget; a polynomial hash over the
    UTF-8 buffer with a cumulative sum takes a few ms and is stable across processes (no Python hash seed).
    """
    arr = pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    raw = (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8))
    raw = raw[offsets[0]: offsets[-1]].astype(np.uint64)
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    position = np.arange(len(raw)) - np.repeat(offsets[:-1], lengths)
    powers = np.cumprod(np.full(int(lengths.max(initial=0)) + 1, _POLY, dtype=np.uint64))
    total = np.concatenate(([np.uint64(0)], np.cumsum(raw * powers[position], dtype=np.uint64)))
    return _splitmix((total[offsets[1:]] - total[offsets[:-1]]) ^ (lengths.astype(np.uint64) * _GOLDEN))


def row_uniforms(doc_ids: Any, query_ids: Any, codes: np.ndarray, seed: int) -> np.ndarray:
    """A uniform in (0, 1) per row from (seed, query id, doc id) alone; row r's query is `query_ids[codes[r]]` (the
    query ids hashed once each, not once per row)."""
    seed_mix = _splitmix(np.array([seed], dtype=np.uint64) * _GOLDEN + _GOLDEN)
    query_hash = _string_hash(query_ids)[codes]
    x = _splitmix(_splitmix(query_hash ^ seed_mix) + _string_hash(doc_ids))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53


def sampling_order(frame: pd.DataFrame, hard: np.ndarray, codes: np.ndarray, uniques: Any, score: np.ndarray,
                    fused: np.ndarray, ref: np.ndarray, params: CurateParams) -> np.ndarray:
    """The hard rows, grouped by query, each group in the order the strategy draws them."""
    hard_codes = codes[hard]
    if params.sampling == "top":
        return hard[grouped_order(hard_codes, best_first_key(score[hard], fused[hard]))]
    uniform = row_uniforms(frame["doc_id"], uniques, codes, params.seed)[hard]
    if params.sampling == "random":
        return hard[grouped_order(hard_codes, uniform)]
    # SimANS without replacement via the Gumbel-top-k trick: sorting log p + Gumbel noise descending draws
    # k items without replacement with probabilities ∝ p, with no per-query loop. A query with no scored positive
    # has no peak to aim at; it falls back to uniform draws (distance 0).
    dist = np.nan_to_num(score[hard].astype(np.float64) - ref[hard_codes] - params.simans_b, nan=0.0)
    key = -params.simans_a * dist * dist - np.log(-np.log(uniform))
    return hard[grouped_order(hard_codes, -key)]


def grouped_order(codes: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Indices that sort rows by (query code, key), both ascending.

    Two int64 argsorts (rank the key, then sort code * n + rank) run 4x faster than np.lexsort on 100k rows.
    """
    rank = np.empty(len(key), dtype=np.int64)
    rank[np.argsort(key)] = np.arange(len(key))
    return np.argsort(codes.astype(np.int64) * len(key) + rank)


def best_first_key(score: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """An int64 that sorts ascending by teacher score descending, then fused rank ascending (scores not NaN)."""
    bits = score.astype(np.float32).view(np.int32).astype(np.int64)
    ordered = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # IEEE bits made monotonic for negative floats
    return (-ordered << 31) | np.clip(fused, 0, 2**31 - 1)


def rank_in_groups(sorted_codes: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run, for codes sorted ascending (cumcount without pandas)."""
    starts = np.cumsum(group_sizes) - group_sizes
    return np.arange(len(sorted_codes)) - starts[sorted_codes]
