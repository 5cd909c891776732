"""On-disk caches for embeddings and teacher scores: fingerprinted, chunked, resumable, never pickled.

Every file is written to a temporary name in its final folder and renamed into place, so a run killed at any instant
(SIGKILL included) leaves only complete files; the next run keeps them and computes only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .progress import Progress, no_progress

__all__ = ["default_cache_dir", "texts_digest", "pair_keys", "EmbeddingCache", "PairScoreCache", "atomic_path",
           "atomic_write_bytes"]

_PAIR_DTYPE = np.dtype([("key", "<u8"), ("raw", "<f4")])


def default_cache_dir() -> Path:
    """$HNM_CACHE_DIR, else ~/.cache/hnm."""
    env = os.environ.get("HNM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hnm"


def texts_digest(texts: Sequence[str], *, prefix: str = "") -> str:
    """Hash of an ordered list of texts (length-prefixed, so ["ab", "c"] and ["a", "bc"] differ)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prefix.encode())
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def pair_keys(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    """64-bit keys for (query text, document text) pairs."""
    out = np.empty(len(queries), dtype=np.uint64)
    for i, (q, d) in enumerate(zip(queries, docs, strict=True)):
        h = hashlib.blake2b(digest_size=8)
        qb = q.encode("utf-8")
        h.update(len(qb).to_bytes(8, "little"))
        h.update(qb)
        h.update(d.encode("utf-8"))
        out[i] = int.from_bytes(h.digest(), "little")
    return out


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on any error removed.

    Readers therefore see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray | None:
    """Load a cache file; a damaged one (only possible if something outside hnm touched it) counts as missing."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


class EmbeddingCache:
    """Embeddings of an ordered list of texts, stored as one float16 `.npy` per key and opened as a memmap.

    While being computed, rows are written in chunk files (`part-000000.npy`, ...); a killed run resumes at the first
    missing chunk. When every chunk exists they are joined into `embeddings.npy` and removed.
    """

    def __init__(self, root: str | Path | None = None, *, chunk_rows: int = 1024) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.chunk_rows = chunk_rows

    def folder(self, key: str) -> Path:
        return self.root / "embeddings" / key

    def get(self, key: str, n_rows: int) -> np.ndarray | None:
        """The finished array for `key`, or None."""
        array = _load_npy(self.folder(key) / "embeddings.npy", mmap=True)
        if array is None or array.ndim != 2 or array.shape[0] != n_rows:
            return None
        return array

    def get_or_compute(
        self,
        key: str,
        n_rows: int,
        compute: Callable[[int, int], np.ndarray],
        *,
        meta: dict | None = None,
        progress: Progress = no_progress,
        stage: str = "encode",
    ) -> np.ndarray:
        """Return the (n_rows, dim) float16 array for `key`, calling `compute(start, stop)` for missing chunks only."""
        done = self.get(key, n_rows)
        if done is not None:
            progress(stage, n_rows, n_rows)
            return done
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        starts = list(range(0, n_rows, self.chunk_rows))
        parts: list[Path] = []
        finished = 0
        progress(stage, 0, n_rows)
        for i, start in enumerate(starts):
            stop = min(start + self.chunk_rows, n_rows)
            part = folder / f"part-{i:06d}.npy"
            parts.append(part)
            existing = _load_npy(part, mmap=True)
            if existing is None or existing.shape[0] != stop - start:
                rows = np.asarray(compute(start, stop), dtype=np.float16)
                if rows.ndim != 2 or rows.shape[0] != stop - start:
                    raise ValueError(f"compute({start}, {stop}) returned shape {rows.shape}")
                _atomic_save_npy(part, rows)
            finished = stop
            progress(stage, finished, n_rows)
        dim = _load_npy(parts[0], mmap=True).shape[1] if parts else 0
        with atomic_path(folder / "embeddings.npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n_rows, dim))
            for start, part in zip(starts, parts):
                rows = _load_npy(part, mmap=True)
                out[start : start + rows.shape[0]] = rows
            out.flush()
            del out
        atomic_write_bytes(
            folder / "meta.json",
            json.dumps({"n_rows": n_rows, "dim": dim, "created": time.time(), **(meta or {})}, indent=2).encode(),
        )
        for part in parts:
            part.unlink(missing_ok=True)
        result = self.get(key, n_rows)
        assert result is not None
        return result


class PairScoreCache:
    """Scores of (query, document) pairs under one model, keyed by 64-bit hashes of the two texts.

    Each `add` writes one chunk file atomically, so scoring can stop anywhere and resume; a later call with a larger
    top-N scores only the new pairs. Many chunks are merged into one on load.
    """

    def __init__(self, root: str | Path | None, namespace: str, *, merge_above: int = 64) -> None:
        base = Path(root) if root is not None else default_cache_dir()
        self.folder = base / "pair_scores" / namespace
        self.merge_above = merge_above
        self._keys = np.empty(0, dtype=np.uint64)
        self._raw = np.empty(0, dtype=np.float32)
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        files = sorted(self.folder.glob("chunk-*.npy"))
        arrays = [a for a in (_load_npy(f) for f in files) if a is not None and a.dtype == _PAIR_DTYPE]
        if not arrays:
            return
        merged = np.concatenate(arrays)
        merged = merged[np.argsort(merged["key"], kind="stable")]
        keep = np.ones(len(merged), dtype=bool)
        keep[:-1] = merged["key"][:-1] != merged["key"][1:]  # keep the last write of a key
        merged = merged[keep]
        self._keys, self._raw = merged["key"].copy(), merged["raw"].copy()
        if len(files) > self.merge_above:
            _atomic_save_npy(self.folder / f"chunk-{time.time_ns():020d}.npy", merged)
            for f in files:
                f.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Raw scores for `keys`, NaN where not cached."""
        out = np.full(len(keys), np.nan, dtype=np.float32)
        if len(self._keys) == 0 or len(keys) == 0:
            return out
        pos = np.searchsorted(self._keys, keys)
        pos_clipped = np.minimum(pos, len(self._keys) - 1)
        hit = self._keys[pos_clipped] == keys
        out[hit] = self._raw[pos_clipped[hit]]
        return out

    def add(self, keys: np.ndarray, raw: np.ndarray) -> None:
        """Persist a chunk of scores, then make them visible to `lookup`."""
        chunk = np.empty(len(keys), dtype=_PAIR_DTYPE)
        chunk["key"] = keys
        chunk["raw"] = raw
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_save_npy(self.folder / f"chunk-{time.time_ns():020d}.npy", chunk)
        keys_all = np.concatenate([self._keys, chunk["key"]])
        raw_all = np.concatenate([self._raw, chunk["raw"]])
        order = np.argsort(keys_all, kind="stable")
        self._keys, self._raw = keys_all[order], raw_all[order]
