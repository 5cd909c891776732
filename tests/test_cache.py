import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hnm_core.cache import EmbeddingCache, PairScoreCache, pair_keys, texts_digest
from hnm_core.manifest import atomic_path
from hnm_core.cli import main
from hnm_core.retrieve.dense import batch_order, encode
from hnm_core.errors import CacheWarning, ModelOutputError
from hnm_core.models.loading import load_bi_encoder, load_cross_encoder
from hnm_core.pool import PoolParams, build_pool, load_pool
from hnm_core.teacher.scoring import TeacherParams, score_pool


@pytest.fixture
def pool(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    return build_pool(tiny_collection, PoolParams.from_settings({"top_k": 5}), encoder=encoder,
                      cache_dir=tmp_path / "cache")


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


def interrupted_fill(cache, key, n_rows, compute, *, stop_at):
    """Fill `key` with `compute`, stopped (as by Ctrl-C) when the run reaches row `stop_at`."""
    def stopping(start, stop):
        if start >= stop_at:
            raise KeyboardInterrupt
        return compute(start, stop)

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(key, n_rows, stopping)


def test_embedding_cache_resumes_from_finished_chunks(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_rows=2)

    interrupted_fill(cache, "k", 7, rows, stop_at=4)
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


# --- verified cache, resume grain, concurrent runs (docs/reliability.md) -------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def wide_rows(start: int, stop: int) -> np.ndarray:
    """Rows big enough that a 64 KiB block of damage stays inside the data, as in the reliability drill."""
    return np.sin(np.arange(start * 384, stop * 384, dtype=np.float32)).reshape(-1, 384)


def damage(path: Path, how: str) -> None:
    """Damage a .npy file the ways a disk or a stray tool does: zeros or random bytes over the data with the header
    and the size kept, or a truncation."""
    data = path.read_bytes()
    header = len(data) - np.load(path, mmap_mode="r").nbytes
    if how == "zeros":
        path.write_bytes(data[:header] + bytes(len(data) - header))
    elif how == "random":
        path.write_bytes(data[:header] + np.random.default_rng(0).bytes(len(data) - header))
    else:
        path.write_bytes(data[: len(data) // 2])


DAMAGES = ["zeros", "random", "truncated"]


class Counter:
    def __init__(self, fn):
        self.fn = fn
        self.rows = 0

    def __call__(self, start, stop):
        self.rows += stop - start
        return self.fn(start, stop)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_embedding_file_is_recomputed_with_a_warning(tmp_path, how):
    clean = np.array(EmbeddingCache(tmp_path / "clean").get_or_compute("k", 300, wide_rows))
    cache = EmbeddingCache(tmp_path / "c")
    cache.get_or_compute("k", 300, wide_rows)
    damage(cache.folder("k") / "embeddings.npy", how)
    with pytest.warns(CacheWarning, match=r"damaged cache file .*embeddings\.npy.*recomputing it"):
        assert cache.get("k", 300) is None  # what load_pool sees: no embeddings rather than wrong ones
    compute = Counter(wide_rows)
    with pytest.warns(CacheWarning):
        again = cache.get_or_compute("k", 300, compute)
    assert compute.rows == 300
    np.testing.assert_array_equal(again, clean)
    assert cache.get("k", 300) is not None


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_part_is_recomputed_alone(tmp_path, how):
    clean = np.array(EmbeddingCache(tmp_path / "clean").get_or_compute("k", 300, wide_rows))
    cache = EmbeddingCache(tmp_path / "c", chunk_rows=100, first_rows=100)

    interrupted_fill(cache, "k", 300, wide_rows, stop_at=200)
    damage(next(cache.folder("k").glob("part-000000100-000000200-*.npy")), how)
    compute = Counter(wide_rows)
    with pytest.warns(CacheWarning, match="part-000000100-000000200"):
        again = cache.get_or_compute("k", 300, compute)
    assert compute.rows == 200  # the damaged part and the missing one; the intact first part is kept
    np.testing.assert_array_equal(again, clean)


def test_a_damaged_meta_json_is_recomputed_and_an_old_format_entry_silently(tmp_path):
    cache = EmbeddingCache(tmp_path)
    clean = np.array(cache.get_or_compute("k", 10, rows))
    meta = cache.folder("k") / "meta.json"
    meta.write_bytes(bytes(meta.stat().st_size))
    with pytest.warns(CacheWarning, match="meta.json"):
        np.testing.assert_array_equal(cache.get_or_compute("k", 10, rows), clean)
    # hnm before checksums wrote no "format": such an entry cannot be verified, so it is recomputed without a word.
    meta.write_text('{"n_rows": 10, "dim": 4}')
    compute = Counter(rows)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.get_or_compute("k", 10, compute), clean)
    assert compute.rows == 10


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_score_chunk_is_rescored_with_a_warning(pool, tiny_cross_encoder_dir, tmp_path, how):
    teacher = load_cross_encoder(str(tiny_cross_encoder_dir), precision="fp32")
    cache = tmp_path / "scores"
    params = TeacherParams.from_settings({"teacher": "cross-encoder", "teacher_top_n": 3})
    clean = score_pool(pool, params, model=teacher, cache_dir=cache)
    chunks = sorted((cache / "pair_scores" / teacher.fingerprint).glob("chunk-*.npy"))
    damage(chunks[0], how)
    with pytest.warns(CacheWarning, match=r"chunk-.*\.npy"):
        again = score_pool(pool, params, model=teacher, cache_dir=cache)
    np.testing.assert_array_equal(again.frame["teacher_raw"], clean.frame["teacher_raw"])


def test_cli_reports_a_damaged_cache_in_one_line_and_exports_the_same(tiny_bi_encoder_dir, tmp_path, capsys):
    flags = ["--model", str(tiny_bi_encoder_dir), "--cache-dir", str(tmp_path / "cache"), "--quiet",
             "--precision", "fp32", "--top-k", "10"]
    sample = ROOT / "sample_data"
    assert main(["pool", str(sample), "--out", str(tmp_path / "a"), *flags]) == 0
    for path in (tmp_path / "cache" / "embeddings").glob("*/embeddings.npy"):
        damage(path, "zeros")
    capsys.readouterr()
    assert main(["pool", str(sample), "--out", str(tmp_path / "b"), *flags]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("hnm pool: warning: damaged cache file ")]
    assert len(warned) == 2 and "warnings.warn" not in err  # documents and queries, one line each
    a, b = load_pool(tmp_path / "a").frame, load_pool(tmp_path / "b").frame
    pd.testing.assert_frame_equal(a, b)


def test_non_finite_rows_are_refused_and_nothing_is_cached(tmp_path):
    def bad(start, stop):
        out = rows(start, stop)
        out[0, 0] = np.inf if start else 1e6  # 1e6 overflows float16 to inf
        return out

    cache = EmbeddingCache(tmp_path, chunk_rows=2)
    with pytest.raises(ModelOutputError, match=r"^my-model: produced NaN or infinite embeddings for texts 0\.\.1;"):
        cache.get_or_compute("k", 4, bad, meta={"model": "my-model"})
    assert not list(cache.folder("k").glob("*.npy"))


def test_a_model_that_produces_nan_is_a_one_line_error_naming_it(tiny_bi_encoder_dir, tmp_path):
    import torch

    model = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    with torch.no_grad():
        next(model.model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelOutputError) as error:
        encode(model, ["alpha", "beta"], cache_dir=tmp_path)
    assert str(tiny_bi_encoder_dir) in str(error.value) and "\n" not in str(error.value)
    assert not list((tmp_path / "embeddings").glob("*/*.npy"))


def test_a_cross_encoder_that_produces_nan_is_a_one_line_error(pool, tiny_cross_encoder_dir, tmp_path):
    import torch

    teacher = load_cross_encoder(str(tiny_cross_encoder_dir), precision="fp32")
    with torch.no_grad():
        next(teacher.model.model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelOutputError, match=r"produced NaN or infinite scores"):
        score_pool(pool, TeacherParams.from_settings({"teacher": "cross-encoder", "teacher_top_n": 2}), model=teacher,
                   cache_dir=tmp_path / "s")
    assert not list((tmp_path / "s").glob("pair_scores/*/*.npy"))


def test_slices_shrink_to_a_few_seconds_of_work(tmp_path):
    """A slow model saves after about `chunk_seconds` of work, not after `chunk_rows` texts."""
    calls = []

    def slow(start, stop):
        calls.append(stop - start)
        time.sleep(0.01 * (stop - start))  # 100 rows/s
        return rows(start, stop)

    EmbeddingCache(tmp_path, chunk_rows=256, chunk_seconds=0.05, first_rows=32).get_or_compute("k", 60, slow)
    assert calls[0] == 32 and max(calls[1:]) <= 8


def test_a_kill_loses_at_most_the_first_slice_of_32_rows(tmp_path):
    """With the default grain, kill -9 during the second slice: the rerun computes only the rows after the first 32."""
    script = textwrap.dedent(f"""
        import os, signal, sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from hnm_core.cache import EmbeddingCache
        def compute(start, stop):
            if start > 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return np.arange(start * 4, stop * 4, dtype=np.float32).reshape(-1, 4) / 1000
        EmbeddingCache({str(tmp_path)!r}).get_or_compute("k", 1000, compute)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    compute = Counter(rows)
    out = EmbeddingCache(tmp_path).get_or_compute("k", 1000, compute)
    assert compute.rows == 1000 - 32
    np.testing.assert_allclose(out, rows(0, 1000), atol=1e-3)


@pytest.mark.slow
def test_a_kill_loses_at_most_the_slice_in_progress(tiny_bi_encoder_dir, tmp_path):
    """kill -9 during the second slice of texts: the rerun encodes only the texts after the first slice (one batch of
    64, the default batch size, in the encoding order)."""
    texts = [f"passage {i} on topic {i % 7}" for i in range(300)]
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from hnm_core.retrieve.dense import encode
        from hnm_core.models.loading import load_bi_encoder
        model = load_bi_encoder({str(tiny_bi_encoder_dir)!r}, precision="fp32")
        real, calls = model.model.encode, []
        def encode_then_die(texts, **kwargs):
            calls.append(len(texts))
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(texts, **kwargs)
        model.model.encode = encode_then_die
        encode(model, {texts!r}, cache_dir={str(tmp_path / "cache")!r})
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    model = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    real, encoded = model.model.encode, []

    def counting(batch, **kwargs):
        encoded.extend(batch)
        return real(batch, **kwargs)

    model.model.encode = counting
    out = encode(model, texts, cache_dir=tmp_path / "cache")
    first = set(batch_order(texts)[:64].tolist())
    assert sorted(encoded) == sorted(t for i, t in enumerate(texts) if i not in first)  # each once
    reference = encode(load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32"), texts, cache_dir=tmp_path / "ref")
    np.testing.assert_allclose(out, reference, atol=2e-3)


def test_leftover_temporary_files_are_removed_at_start(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_rows=2)
    folder = cache.folder("k")
    folder.mkdir(parents=True)
    (folder / ".part-000000000-000000002-00000000.npy.abc123.tmp").write_bytes(b"")
    (folder / ".embeddings.npy.def456.tmp").write_bytes(b"\x93NUMPY half")
    scores = tmp_path / "pair_scores" / "m"
    scores.mkdir(parents=True)
    (scores / ".chunk-1.npy.x.tmp").write_bytes(b"")
    cache.get_or_compute("k", 3, rows)
    PairScoreCache(tmp_path, "m")
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy", "meta.json"]
    assert not list(scores.iterdir())


def wait_until_ready(outs: list[Path], timeout: float = 120) -> None:
    """Both processes have imported what they need: released together, they really run at the same time."""
    deadline = time.monotonic() + timeout
    while not all(Path(f"{out}.ready").exists() for out in outs) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_two_processes_computing_one_entry_compute_it_once(tmp_path):
    """Two processes ask for the same entry at the same instant: one computes while the other waits on the entry's
    lock (drawing the first one's progress), then reads the result; both get the exact rows."""
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import json, sys, time, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from hnm_core.cache import EmbeddingCache
        computed, seen = [], []
        def compute(start, stop):
            computed.append(stop - start)
            time.sleep(0.05)
            return np.arange(start * 4, stop * 4, dtype=np.float32).reshape(-1, 4) / 1000
        Path(sys.argv[1] + ".ready").touch()
        while not Path({str(go)!r}).exists():
            time.sleep(0.005)
        cache = EmbeddingCache({str(tmp_path / "cache")!r}, chunk_rows=10, first_rows=10)
        out = cache.get_or_compute("k", 400, compute, progress=lambda stage, done, total: seen.append(done))
        np.save(sys.argv[1], np.asarray(out))
        print(json.dumps({{"computed": sum(computed), "seen": seen}}))
    """)
    outs = [tmp_path / f"run{i}.npy" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
             for out in outs]
    wait_until_ready(outs)
    go.touch()
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    for out in outs:
        np.testing.assert_allclose(np.load(out), rows(0, 400), atol=1e-3)
    assert sorted(r["computed"] for r in reports) == [0, 400]
    waiter = next(r for r in reports if r["computed"] == 0)
    assert waiter["seen"][-1] == 400 and len(waiter["seen"]) > 2  # progress of the other run while waiting


@pytest.mark.slow
def test_two_runs_sharing_a_cache_both_finish_correctly(tiny_bi_encoder_dir, tmp_path):
    """Two processes start encoding the same texts into one cache at the same instant: one computes, the other
    waits for it (never joining or deleting half-done parts), and both return the right embeddings."""
    texts = [f"shared passage {i} about {i % 11}" for i in range(600)]
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from hnm_core.retrieve.dense import encode
        from hnm_core.models.loading import load_bi_encoder
        model = load_bi_encoder({str(tiny_bi_encoder_dir)!r}, precision="fp32", eager=True)
        Path(sys.argv[1] + ".ready").touch()
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        out = encode(model, {texts!r}, cache_dir={str(tmp_path / "cache")!r})
        np.save(sys.argv[1], np.asarray(out))
    """)
    outs = [tmp_path / f"run{i}.npy" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out)]) for out in outs]
    wait_until_ready(outs)
    go.touch()
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    first, second = (np.load(out) for out in outs)
    np.testing.assert_array_equal(first, second)
    reference = encode(load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32"), texts, cache_dir=tmp_path / "ref")
    np.testing.assert_allclose(first, reference, atol=2e-3)
    assert sorted(p.name for p in (tmp_path / "cache" / "embeddings").glob("*/*")) == ["embeddings.npy", "meta.json"]
