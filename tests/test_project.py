"""project: seeded 2-D UMAP with a disk cache and a fit-on-a-sample path for large inputs.

The tests that run UMAP are `slow`: umap-learn's numba JIT costs 25-40 s on the first call of a process."""

from __future__ import annotations

import numpy as np
import pytest

from hnm_core.errors import DataError, SettingsError
from hnm_core.pool.project import project_2d, projection_key


def blobs(n_per: int, *, dim: int = 24, centres: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `centres` well-separated directions, and the blob of each row."""
    rng = np.random.default_rng(seed)
    axes = np.eye(dim, dtype=np.float32)[:centres] * 4.0
    labels = np.repeat(np.arange(centres), n_per)
    points = axes[labels] + rng.normal(scale=0.6, size=(len(labels), dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True), labels


def separation(coords: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance between blob centres divided by the mean distance of points to their own centre."""
    centres = np.stack([coords[labels == c].mean(axis=0) for c in np.unique(labels)])
    within = np.mean([np.linalg.norm(coords[labels == c] - centres[c], axis=1).mean() for c in np.unique(labels)])
    between = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]])
    return float(between / within)


@pytest.mark.parametrize("kwargs, error", [
    (dict(n_neighbors=1), SettingsError),
    (dict(n_neighbors=2.5), SettingsError),
    (dict(min_dist=-0.1), SettingsError),
    (dict(min_dist=1.5), SettingsError),
    (dict(fit_sample=3), SettingsError),
    (dict(seed=-1), SettingsError),
])
def test_bad_parameters_fail_before_any_work(tmp_path, kwargs, error):
    with pytest.raises(error):
        project_2d(np.ones((5, 4), np.float32), cache_dir=tmp_path, **kwargs)
    assert not (tmp_path / "projections").exists()


@pytest.mark.parametrize("embeddings", [np.ones(8, np.float32), np.ones((4, 0), np.float32)])
def test_not_a_matrix_is_a_data_error(tmp_path, embeddings):
    with pytest.raises(DataError, match="2-D"):
        project_2d(embeddings, cache_dir=tmp_path)


def test_non_finite_values_are_a_data_error(tmp_path):
    embeddings = np.ones((6, 4), np.float32)
    embeddings[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        project_2d(embeddings, cache_dir=tmp_path)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_points_lie_on_a_line(tmp_path, n):
    coords = project_2d(np.ones((n, 4), np.float32), cache_dir=tmp_path)
    assert coords.shape == (n, 2) and coords.dtype == np.float32
    assert np.array_equal(coords[:, 0], np.arange(n))


def test_cache_hit_reads_the_file_instead_of_running_umap(tmp_path):
    embeddings, _ = blobs(10)
    key = projection_key(embeddings, seed=0, n_neighbors=15, min_dist=0.1, fit_sample=20000)
    planted = np.arange(60, dtype=np.float32).reshape(30, 2)
    (tmp_path / "projections").mkdir()
    np.save(tmp_path / "projections" / f"{key}.npy", planted, allow_pickle=False)
    assert np.array_equal(project_2d(embeddings, cache_dir=tmp_path), planted)


@pytest.mark.parametrize("change", [dict(seed=1), dict(n_neighbors=5), dict(min_dist=0.5), dict(fit_sample=100)])
def test_key_changes_with_every_parameter_and_the_data(change):
    embeddings, _ = blobs(10)
    base = dict(seed=0, n_neighbors=15, min_dist=0.1, fit_sample=20000)
    key = projection_key(embeddings, **base)
    assert projection_key(embeddings, **{**base, **change}) != key
    other = embeddings.copy()
    other[0, 0] += 1e-3
    assert projection_key(other, **base) != key
    assert projection_key(embeddings.astype(np.float16), **base) != key


@pytest.mark.slow
def test_seeded_map_is_deterministic_separates_blobs_and_is_cached(tmp_path):
    embeddings, labels = blobs(40)
    first = project_2d(embeddings, seed=3, cache_dir=tmp_path / "a")
    assert first.shape == (120, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    assert separation(first, labels) > 3.0
    again = project_2d(embeddings, seed=3, cache_dir=tmp_path / "b")  # a fresh cache: computed again
    assert np.array_equal(first, again)
    assert not np.array_equal(first, project_2d(embeddings, seed=4, cache_dir=tmp_path / "b"))
    files = sorted((tmp_path / "a" / "projections").glob("*.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0], allow_pickle=False), first)


@pytest.mark.slow
def test_large_input_is_fitted_on_a_sample_and_the_rest_transformed(tmp_path):
    embeddings, labels = blobs(60)
    full = project_2d(embeddings, seed=0, cache_dir=tmp_path)
    sampled = project_2d(embeddings, seed=0, fit_sample=60, cache_dir=tmp_path)
    assert sampled.shape == (180, 2) and np.isfinite(sampled).all()
    assert not np.array_equal(full, sampled)  # a different layout: only 60 points were fitted
    # The 120 transformed points land with their own blob, as the fitted ones do.
    fitted = np.zeros(180, bool)
    fitted[np.sort(np.random.default_rng(0).choice(180, size=60, replace=False))] = True
    assert separation(sampled[~fitted], labels[~fitted]) > 3.0
    assert np.array_equal(sampled, project_2d(embeddings, seed=0, fit_sample=60, cache_dir=tmp_path / "again"))


@pytest.mark.slow
def test_damaged_cache_file_is_recomputed(tmp_path):
    embeddings, _ = blobs(10)
    first = project_2d(embeddings, cache_dir=tmp_path)
    (path,) = (tmp_path / "projections").glob("*.npy")
    path.write_bytes(b"not an npy file")
    assert np.array_equal(project_2d(embeddings, cache_dir=tmp_path), first)
    assert np.array_equal(np.load(path, allow_pickle=False), first)
