"""Seeded draws for curate's sampling that depend on the row alone: a uniform per (seed, query id, doc id).

A draw does not depend on row order or on which other rows are in the hard band, so moving a slider only changes a
row's draw when it changes the row's band, and the same seed samples the same negatives in the app and the CLI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["row_uniforms"]

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
