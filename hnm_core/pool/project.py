"""Stage 6, project: a seeded 2-D UMAP map of embeddings, cached on disk, for the app's Explore page.

A seeded UMAP runs single-threaded (umap-learn turns parallelism off when `random_state` is set, so the layout is
reproducible), and its numba JIT makes the first call in a process slow; both are why the result is cached on disk
under the hnm cache folder, keyed by the embeddings and the parameters, and why large inputs are fitted on a sample.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from ..cache import default_cache_dir
from ..errors import DataError, SettingsError
from ..manifest import atomic_path
from ..settings import setting

__all__ = ["project_2d", "projection_key"]

# Below this many points UMAP's spectral initialisation (an eigen-solve on the k-NN graph) fails or is meaningless.
_MIN_SPECTRAL = 16
# Rows converted to float32 (checked, transformed) at a time.
_CHUNK = 100_000


def projection_key(embeddings: np.ndarray, *, seed: int, n_neighbors: int, min_dist: float,
                   fit_sample: int) -> str:
    """The cache key of a projection: a hash of the embeddings (shape, dtype, bytes), the parameters and the
    umap-learn version (another version may lay the same points out differently)."""
    from importlib.metadata import version

    array = np.ascontiguousarray(embeddings)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.shape}|{array.dtype.str}|{seed}|{n_neighbors}|{min_dist!r}|{fit_sample}|"
             f"umap-{version('umap-learn')}|cosine-v1".encode())
    # Hash in blocks so a memory-mapped float16 corpus is never copied whole.
    flat = array.reshape(-1) if array.size else array
    step = 1 << 24
    for start in range(0, flat.size, step):
        h.update(flat[start : start + step].tobytes())
    return h.hexdigest()


def project_2d(
    embeddings: np.ndarray,
    *,
    seed: int = setting("seed").default,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    fit_sample: int = 20000,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Project `embeddings` (n, dim) to an (n, 2) float32 array with cosine UMAP.

    seed: UMAP's random_state and the sample's seed; the same input and seed give the same map.
    n_neighbors: neighbourhood size; larger keeps more global structure (clipped to n - 1 for tiny inputs).
    min_dist: how tightly UMAP packs neighbours (0 = clumps, 1 = evenly spread).
    fit_sample: above this many rows, UMAP is fitted on a seeded sample of that size and the other rows are placed
        with `transform` (fitting 1M points would take hours single-threaded; transform is linear in n).
    cache_dir: where results are cached as `projections/<key>.npy` (default: $HNM_CACHE_DIR or ~/.cache/hnm).
    """
    if not isinstance(n_neighbors, int) or isinstance(n_neighbors, bool) or n_neighbors < 2:
        raise SettingsError(f"n_neighbors: {n_neighbors!r} must be an integer of at least 2 (UMAP's default is 15)")
    if not 0.0 <= float(min_dist) <= 1.0:
        raise SettingsError(f"min_dist: {min_dist!r} must be between 0 and 1 (UMAP's default is 0.1)")
    if not isinstance(fit_sample, int) or isinstance(fit_sample, bool) or fit_sample < _MIN_SPECTRAL:
        raise SettingsError(f"fit_sample: {fit_sample!r} must be an integer of at least {_MIN_SPECTRAL}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SettingsError(f"seed: {seed!r} must be a non-negative integer")
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError("embeddings", f"expected a 2-D (n, dim) array, got shape {array.shape}.",
                        fix="pass one embedding per row, e.g. Pool.doc_embeddings")
    n = len(array)
    if n < 3:  # nothing to lay out: put the points on a line
        return np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n, np.float32)])
    if not all(np.isfinite(array[i : i + _CHUNK]).all() for i in range(0, n, _CHUNK)):
        raise DataError("embeddings", "contain NaN or infinite values.", fix="re-encode the texts (hnm_core.retrieve.dense)")

    key = projection_key(array, seed=seed, n_neighbors=n_neighbors, min_dist=float(min_dist), fit_sample=fit_sample)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / "projections" / f"{key}.npy"
    cached = _load(path, n)
    if cached is not None:
        return cached

    if n > fit_sample:
        fit_rows = np.sort(np.random.default_rng(seed).choice(n, size=fit_sample, replace=False))
    else:
        fit_rows = np.arange(n)
    reducer = _umap(len(fit_rows), seed=seed, n_neighbors=n_neighbors, min_dist=float(min_dist))
    coords = np.empty((n, 2), dtype=np.float32)
    with warnings.catch_warnings():
        # umap warns that random_state disables parallelism: that is the point (reproducible maps), said in the UI.
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        coords[fit_rows] = reducer.fit_transform(array[fit_rows].astype(np.float32))
        rest = np.setdiff1d(np.arange(n), fit_rows, assume_unique=True)
        # float32 copies one chunk at a time: a million float16 embeddings stay 0.8 GB, not 1.5 GB more
        for start in range(0, len(rest), _CHUNK):
            rows = rest[start : start + _CHUNK]
            coords[rows] = reducer.transform(array[rows].astype(np.float32))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, coords, allow_pickle=False)
    return coords


def _umap(n_fit: int, *, seed: int, n_neighbors: int, min_dist: float):
    import umap

    return umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, n_fit - 1),
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        n_jobs=1,
        init="spectral" if n_fit >= _MIN_SPECTRAL else "random",
    )


def _load(path: Path, n: int) -> np.ndarray | None:
    """A cached projection, or None when absent or damaged (it is then recomputed and replaced)."""
    try:
        coords = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if coords.shape != (n, 2) or coords.dtype != np.float32:
        return None
    return coords
