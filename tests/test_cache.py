import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hnm_core.cache import EmbeddingCache, PairScoreCache, atomic_path, pair_keys, texts_digest


def rows(start: int, stop: int, dim: int = 4) -> np.ndarray:
    return np.arange(start * dim, stop * dim, dtype=np.float32).reshape(-1, dim) / 1000


def test_embedding_cache_computes_once(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_rows=3)
    calls = []

    def compute(start, stop):
        calls.append((start, stop))
        return rows(start, stop)

    first = cache.get_or_compute("k", 8, compute)
    assert calls == [(0, 3), (3, 6), (6, 8)]
    assert first.dtype == np.float16 and first.shape == (8, 4)
    np.testing.assert_allclose(first, rows(0, 8), atol=1e-3)
    second = cache.get_or_compute("k", 8, compute)
    assert calls == [(0, 3), (3, 6), (6, 8)]  # nothing recomputed
    assert isinstance(second, np.memmap)
    assert sorted(p.name for p in (tmp_path / "embeddings" / "k").iterdir()) == ["embeddings.npy", "meta.json"]


def test_embedding_cache_resumes_from_finished_chunks(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_rows=2)

    def failing(start, stop):
        if start >= 4:
            raise KeyboardInterrupt
        return rows(start, stop)

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("k", 7, failing)
    calls = []

    def compute(start, stop):
        calls.append(start)
        return rows(start, stop)

    out = cache.get_or_compute("k", 7, compute)
    assert calls == [4, 6]
    np.testing.assert_allclose(out, rows(0, 7), atol=1e-3)


def test_embedding_cache_survives_sigkill(tmp_path):
    """A process killed with SIGKILL mid-run leaves only whole files; the next run resumes and the result is exact."""
    script = textwrap.dedent(f"""
        import os, signal, sys, numpy as np
        sys.path.insert(0, {str(os.getcwd())!r})
        from hnm_core.cache import EmbeddingCache
        def compute(start, stop):
            if start == 6:
                os.kill(os.getpid(), signal.SIGKILL)
            return np.arange(start * 4, stop * 4, dtype=np.float32).reshape(-1, 4) / 1000
        EmbeddingCache({str(tmp_path)!r}, chunk_rows=2).get_or_compute("k", 10, compute)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    folder = tmp_path / "embeddings" / "k"
    # One part per finished slice, named by its rows and checksum; nothing half-written.
    assert sorted(p.name[:24] for p in folder.iterdir()) == [
        "part-000000000-000000002", "part-000000002-000000004", "part-000000004-000000006"]
    calls = []

    def compute(start, stop):
        calls.append(start)
        return rows(start, stop)

    out = EmbeddingCache(tmp_path, chunk_rows=2).get_or_compute("k", 10, compute)
    assert calls == [6, 8]
    np.testing.assert_allclose(out, rows(0, 10), atol=1e-3)


def test_embedding_cache_ignores_a_damaged_chunk(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_rows=2)
    folder = tmp_path / "embeddings" / "k"
    folder.mkdir(parents=True)
    (folder / "part-000000.npy").write_bytes(b"not an npy file")
    out = cache.get_or_compute("k", 3, rows)
    np.testing.assert_allclose(out, rows(0, 3), atol=1e-3)


def test_texts_digest_is_order_and_boundary_sensitive():
    assert texts_digest(["ab", "c"]) != texts_digest(["a", "bc"])
    assert texts_digest(["a", "b"]) != texts_digest(["b", "a"])
    assert texts_digest(["a", "b"]) == texts_digest(["a", "b"])


def test_pair_score_cache_round_trip_and_merge(tmp_path):
    keys = pair_keys(["q1", "q1", "q2"], ["d1", "d2", "d1"])
    assert len(set(keys.tolist())) == 3
    cache = PairScoreCache(tmp_path, "model-a", merge_above=2)
    assert np.isnan(cache.lookup(keys)).all()
    cache.add(keys[:1], np.array([1.5], np.float32))
    cache.add(keys[1:2], np.array([-2.0], np.float32))
    cache.add(keys[2:], np.array([0.25], np.float32))
    reopened = PairScoreCache(tmp_path, "model-a", merge_above=2)
    np.testing.assert_array_equal(reopened.lookup(keys), [1.5, -2.0, 0.25])
    assert len(list((tmp_path / "pair_scores" / "model-a").glob("chunk-*.npy"))) == 1  # merged on load
    assert np.isnan(PairScoreCache(tmp_path, "model-b").lookup(keys)).all()


def test_atomic_path_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
