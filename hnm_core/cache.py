"""On-disk caches for embeddings and teacher scores: fingerprinted, chunked, resumable, verified, never pickled.

Every file is written to a temporary name in its final folder and renamed into place, so a run killed at any instant
(SIGKILL included) leaves only complete files; the next run keeps them and computes only what is missing. Every
array file carries a CRC-32 of its dtype, shape and bytes (in its name or in meta.json) that is checked on each read:
a file damaged outside hnm is recomputed with a CacheWarning, never used. Nothing non-finite is ever written, so a
verified file holds only finite values. Writers of one cache entry take a lock per entry, so runs sharing a cache
never see or delete each other's half-done work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .checked_files import (
    Damaged,
    checksum_seed,
    checksum_update,
    load_checked,
    locked,
    remove_temporaries,
    save_checked,
    warn_damaged,
)
from .errors import ModelOutputError
from .manifest import atomic_path, atomic_write_bytes
from .progress import Progress, no_progress

__all__ = ["default_cache_dir", "texts_digest", "pair_keys", "EmbeddingCache", "PairScoreCache", "ChunkPacer",
]

# How embeddings are saved while they are computed (EmbeddingCache's defaults, read when one is made): slices of at
# most SLICE_ROWS texts and about SLICE_SECONDS of work, the first FIRST_SLICE_ROWS. They decide what a killed run
# loses, never the results: a slice is whole batches.
SLICE_ROWS = 256
SLICE_SECONDS = 5.0
FIRST_SLICE_ROWS = 32

_PAIR_DTYPE = np.dtype([("key", "<u8"), ("raw", "<f4")])
# Format 1 (hnm before checksums) files are never read: they cannot be verified, so they are recomputed.
_FORMAT = 2
_PART = re.compile(r"part-(?P<start>\d{9})-(?P<stop>\d{9})-(?P<checksum>[0-9a-f]{8})\.npy")
# Rows checksummed at a time when parts are joined: 64 MiB of 384-dim float16 vectors.
_CHECKSUM_ROWS = 1 << 16
_CHUNK = re.compile(r"chunk-\d{20}-\d+-(?P<checksum>[0-9a-f]{8})\.npy")


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


class ChunkPacer:
    """Sizes the slices of work saved one by one: at most `max_rows` and about `seconds` of work each, so a killed
    run loses at most one slice whatever the model's speed. Starts at `first_rows`; grows by at most double a slice.

    A slice is always a whole number of `unit`s (the model's batches): the clock decides only where work is saved,
    never which rows are computed together, so the results do not depend on the machine's load."""

    def __init__(self, max_rows: int = 256, seconds: float = 5.0, first_rows: int = 32, *, unit: int = 1) -> None:
        self.unit = max(1, unit)
        self.max_rows = max(1, max_rows)
        self.seconds = seconds
        self.rows = self._whole(min(first_rows, self.max_rows))

    def _whole(self, rows: int) -> int:
        return max(self.unit, rows // self.unit * self.unit)

    def record(self, rows: int, elapsed: float) -> None:
        """Tell the pacer that `rows` took `elapsed` seconds; sets the size of the next slice in `self.rows`."""
        fit = int(rows * self.seconds / elapsed) if elapsed > 0 else self.max_rows
        self.rows = self._whole(min(self.max_rows, 2 * self.rows, fit))


class EmbeddingCache:
    """Embeddings of an ordered list of texts, stored as one float16 `.npy` per key and opened as a memmap.

    An entry is the folder `embeddings/<key>/`. Rows are computed in the caller's `order` (a permutation of the rows;
    positions below are positions in it) in batches of `unit` rows fixed by that order. While an entry is computed,
    positions are saved in slices `part-<start>-<stop>-<crc32>.npy` of whole batches, at most `chunk_rows` rows and
    about `chunk_seconds` of work (ChunkPacer); a killed run resumes at the first missing position, with the same
    batches. When every row exists the parts are joined, back in row order, into `embeddings.npy`, whose checksum,
    shape and dtype go into `meta.json`, and removed. One run computes an entry at a time, under
    `locks/embeddings-<key>.lock`; another run asking for it meanwhile waits, drawing the first one's progress, then
    reads it.
    """

    def __init__(self, root: str | Path | None = None, *, chunk_rows: int | None = None,
                 chunk_seconds: float | None = None, first_rows: int | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.chunk_rows = SLICE_ROWS if chunk_rows is None else chunk_rows
        self.chunk_seconds = SLICE_SECONDS if chunk_seconds is None else chunk_seconds
        self.first_rows = FIRST_SLICE_ROWS if first_rows is None else first_rows

    def folder(self, key: str) -> Path:
        return self.root / "embeddings" / key

    def get(self, key: str, n_rows: int) -> np.ndarray | None:
        """The finished, verified array for `key`, or None (with a CacheWarning if it was damaged)."""
        array, problem = self._read(key, n_rows)
        if problem:
            warn_damaged(problem)
        return array

    def _read(self, key: str, n_rows: int) -> tuple[np.ndarray | None, str | None]:
        """(array, None) when finished and intact; (None, what is wrong) when damaged; (None, None) when absent."""
        folder = self.folder(key)
        path = folder / "embeddings.npy"
        if not path.exists():
            return None, None
        try:
            info = json.loads((folder / "meta.json").read_bytes())
        except FileNotFoundError:
            return None, None  # a run stopped between the two renames (or is replacing a damaged entry)
        except (OSError, ValueError):
            return None, f"{folder / 'meta.json'}: not readable JSON"
        if not isinstance(info, dict):
            return None, f"{folder / 'meta.json'}: not a JSON object"
        if info.get("format") != _FORMAT:
            return None, None
        try:
            array = load_checked(path, info.get("checksum"), mmap=True)
        except FileNotFoundError:
            return None, None
        except Damaged as damage:
            return None, str(damage)
        if array.ndim != 2 or array.shape[0] != n_rows:
            return None, f"{path}: shape {array.shape}, expected {n_rows} rows"
        return array, None

    def get_or_compute(
        self,
        key: str,
        n_rows: int,
        compute: Callable[[int, int], np.ndarray],
        *,
        meta: dict | None = None,
        order: np.ndarray | None = None,
        unit: int = 1,
        progress: Progress = no_progress,
        stage: str = "encode",
    ) -> np.ndarray:
        """Return the (n_rows, dim) float16 array for `key`, calling `compute(start, stop)` for missing positions only:
        it returns the rows `order[start:stop]` (rows start..stop without an `order`). `start` is always a multiple
        of `unit` and `stop` too, but at the end: a batch of `unit` positions is never split between two calls. The
        `unit` must be the same for every run of one key (put what decides it in the key).

        Raises ModelOutputError, naming `meta["model"]`, if `compute` returns NaN or infinite values."""
        done, _ = self._read(key, n_rows)  # the damage, if any, is reported below under the lock
        if done is not None:
            progress(stage, n_rows, n_rows)
            return done
        folder = self.folder(key)

        def waiting() -> None:
            progress(stage, min(n_rows, sum(stop - start for start, stop, _, _ in _scan_parts(folder))), n_rows)

        with locked(self.root / "locks" / f"embeddings-{key}.lock", waiting):
            done = self.get(key, n_rows)  # another run may have finished it while this one waited
            if done is not None:
                progress(stage, n_rows, n_rows)
                return done
            folder.mkdir(parents=True, exist_ok=True)
            remove_temporaries(folder)
            pieces = self._compute_missing(folder, n_rows, compute, (meta or {}).get("model", key), unit, progress,
                                           stage)
            return self._join(folder, n_rows, pieces, meta or {}, order)

    def _compute_missing(self, folder: Path, n_rows: int, compute: Callable[[int, int], np.ndarray], source: str,
                         unit: int, progress: Progress, stage: str) -> list[tuple[int, int, Path]]:
        """Verified (start, stop, path) slices covering 0..n_rows: saved parts where intact, computed otherwise."""
        saved: dict[int, list[tuple[int, Path, str]]] = {}
        for start, stop, path, expected in _scan_parts(folder):
            if start % unit == 0 and (stop % unit == 0 or stop == n_rows):  # never the half of a batch
                saved.setdefault(start, []).append((stop, path, expected))
        pacer = ChunkPacer(self.chunk_rows, self.chunk_seconds, self.first_rows, unit=unit)
        pieces: list[tuple[int, int, Path]] = []
        pos = 0
        progress(stage, 0, n_rows)
        while pos < n_rows:
            found = self._saved_slice(saved.pop(pos, []), pos, n_rows)
            if found is not None:
                stop, path = found
            else:
                next_saved = min((s for s in saved if s > pos), default=n_rows)
                stop = min(pos + pacer.rows, next_saved, n_rows)
                began = time.perf_counter()
                with np.errstate(over="ignore"):  # an overflow to inf is refused just below, by name
                    rows = np.asarray(compute(pos, stop), dtype=np.float16)
                pacer.record(stop - pos, time.perf_counter() - began)
                if rows.ndim != 2 or rows.shape[0] != stop - pos:
                    raise ValueError(f"compute({pos}, {stop}) returned shape {rows.shape}")
                if not np.isfinite(rows).all():
                    raise ModelOutputError(
                        f"{source}: produced NaN or infinite embeddings for texts {pos}..{stop - 1}; nothing of them "
                        "was cached. Fix: check the model's weights, or run it in fp32 (--precision fp32).")
                name = f"part-{pos:09d}-{stop:09d}-{{}}.npy"
                path = save_checked(lambda checksum: folder / name.format(checksum), rows)
            pieces.append((pos, stop, path))
            pos = stop
            progress(stage, pos, n_rows)
        return pieces

    @staticmethod
    def _saved_slice(candidates: list[tuple[int, Path, str]], start: int, n_rows: int) -> tuple[int, Path] | None:
        """(stop, path) of the longest intact saved part starting at `start`; damaged ones are reported and removed."""
        for stop, path, expected in sorted(candidates, reverse=True):
            if stop > n_rows:
                continue
            try:
                array = load_checked(path, expected, mmap=True)
            except Damaged as damage:
                warn_damaged(str(damage))
                path.unlink(missing_ok=True)
                continue
            if array.shape[0] == stop - start:
                return stop, path
        return None

    def _join(self, folder: Path, n_rows: int, pieces: list[tuple[int, int, Path]], meta: dict,
              order: np.ndarray | None) -> np.ndarray:
        """Copy the parts, back in row order, into `embeddings.npy` through a memmap (memory stays at one part), then
        meta.json."""
        dim = np.load(pieces[0][2], mmap_mode="r").shape[1] if pieces else 0
        with atomic_path(folder / "embeddings.npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n_rows, dim))
            for start, stop, path in pieces:
                out[slice(start, stop) if order is None else order[start:stop]] = np.load(path, mmap_mode="r")
            out.flush()
            crc = checksum_seed(np.dtype(np.float16), (n_rows, dim))
            for start in range(0, n_rows, _CHECKSUM_ROWS):
                crc = checksum_update(crc, out[start : start + _CHECKSUM_ROWS])
            del out
            # A reader that finds embeddings.npy without meta.json takes it as unfinished, never as damaged.
            (folder / "meta.json").unlink(missing_ok=True)
        atomic_write_bytes(folder / "meta.json", json.dumps(
            {**meta, "n_rows": n_rows, "dim": dim, "dtype": "float16", "format": _FORMAT, "checksum": f"{crc:08x}",
             "created": time.time()}, indent=2).encode())
        for part in folder.glob("part-*.npy"):
            part.unlink(missing_ok=True)
        return np.load(folder / "embeddings.npy", mmap_mode="r", allow_pickle=False)


def _scan_parts(folder: Path) -> list[tuple[int, int, Path, str]]:
    """(start, stop, path, checksum) of the part files in `folder`, read from their names only."""
    found = []
    for path in folder.glob("part-*.npy"):
        match = _PART.fullmatch(path.name)
        if match:
            found.append((int(match["start"]), int(match["stop"]), path, match["checksum"]))
    return found


class PairScoreCache:
    """Scores of (query, document) pairs under one model, keyed by 64-bit hashes of the two texts.

    Each `add` writes one chunk file `chunk-<time>-<pid>-<crc32>.npy` atomically, so scoring can stop anywhere and
    resume; a later call with a larger top-N scores only the new pairs. Chunks are verified on load (a damaged one is
    removed with a CacheWarning and its pairs scored again) and many are merged into one, all under
    `locks/pair_scores-<namespace>.lock`, which `add` holds too, so concurrent runs never lose each other's chunks.
    """

    def __init__(self, root: str | Path | None, namespace: str, *, merge_above: int = 64) -> None:
        base = Path(root) if root is not None else default_cache_dir()
        self.folder = base / "pair_scores" / namespace
        self._lock = base / "locks" / f"pair_scores-{namespace}.lock"
        self.merge_above = merge_above
        self._keys = np.empty(0, dtype=np.uint64)
        self._raw = np.empty(0, dtype=np.float32)
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        with locked(self._lock):
            remove_temporaries(self.folder)
            files, arrays = [], []
            for path in sorted(self.folder.glob("chunk-*.npy")):
                match = _CHUNK.fullmatch(path.name)
                if match is None:
                    continue  # written by an hnm without checksums: never trusted, its pairs are scored again
                try:
                    array = load_checked(path, match["checksum"])
                except Damaged as damage:
                    warn_damaged(str(damage))
                    path.unlink(missing_ok=True)
                    continue
                files.append(path)
                arrays.append(array)
            if not arrays:
                return
            merged = np.concatenate(arrays)
            merged = merged[np.argsort(merged["key"], kind="stable")]
            keep = np.ones(len(merged), dtype=bool)
            keep[:-1] = merged["key"][:-1] != merged["key"][1:]  # keep the last write of a key
            merged = merged[keep]
            self._keys, self._raw = merged["key"].copy(), merged["raw"].copy()
            if len(files) > self.merge_above:
                self._save(merged)
                for path in files:
                    path.unlink(missing_ok=True)

    def _save(self, chunk: np.ndarray) -> None:
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}-{{}}.npy"
        save_checked(lambda checksum: self.folder / name.format(checksum), chunk)

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
        """Persist a chunk of scores, then make them visible to `lookup`. Scores must be finite (NaN means
        "not cached" to `lookup`): the caller says which model produced a non-finite one."""
        chunk = np.empty(len(keys), dtype=_PAIR_DTYPE)
        chunk["key"] = keys
        chunk["raw"] = raw
        if not np.isfinite(chunk["raw"]).all():
            raise ValueError("PairScoreCache.add: scores must be finite")
        self.folder.mkdir(parents=True, exist_ok=True)
        with locked(self._lock):
            self._save(chunk)
        keys_all = np.concatenate([self._keys, chunk["key"]])
        raw_all = np.concatenate([self._raw, chunk["raw"]])
        order = np.argsort(keys_all, kind="stable")
        self._keys, self._raw = keys_all[order], raw_all[order]
