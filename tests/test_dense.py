import numpy as np
import pytest

from hnm_core.retrieve.dense import DenseIndex, encode
from hnm_core.models.loading import load_bi_encoder


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ docs.T
    order = np.lexsort((np.broadcast_to(np.arange(docs.shape[0]), scores.shape), -scores), axis=-1)[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def test_exact_search_equals_numpy_brute_force():
    docs, queries = random_unit(500, 16, 0), random_unit(40, 16, 1)
    result = DenseIndex.build(docs).search(queries, 25)
    idx, scores = brute_force(queries, docs, 25)
    np.testing.assert_array_equal(result.indices, idx)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)


def test_exact_search_breaks_ties_by_document_index():
    docs = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    result = DenseIndex.build(docs).search(np.array([[1, 0]], np.float32), 3)
    assert result.indices.tolist() == [[0, 1, 3]]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_most_true_neighbours(kind):
    docs, queries = random_unit(3000, 16, 2), random_unit(50, 16, 3)
    approx = DenseIndex.build(docs, kind=kind, seed=0).search(queries, 10)
    exact, _ = brute_force(queries, docs, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.indices.tolist(), exact.tolist())])
    assert recall >= 0.8
    assert (np.diff(approx.scores, axis=1) <= 1e-6).all()


def test_k_is_clipped_to_the_corpus():
    result = DenseIndex.build(random_unit(3, 8, 0)).search(random_unit(2, 8, 1), 10)
    assert result.indices.shape == (2, 3)


def test_encode_is_cached_and_keyed_by_prompt(tiny_bi_encoder_dir, tmp_path):
    model = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    texts = ["first passage", "second passage", "third one"]
    a = encode(model, texts, cache_dir=tmp_path)
    direct = model.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(a, direct, atol=2e-3)  # stored as float16
    assert len(list((tmp_path / "embeddings").iterdir())) == 1
    encode(model, texts, cache_dir=tmp_path)
    assert len(list((tmp_path / "embeddings").iterdir())) == 1
    encode(model, texts, prompt="query: ", cache_dir=tmp_path)
    assert len(list((tmp_path / "embeddings").iterdir())) == 2


def test_encode_reports_every_batch_and_keeps_the_order(tiny_bi_encoder_dir, tmp_path):
    model = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    # lengths out of order: each batch is encoded longest first, the rows must come back in the texts' order
    texts = [("word " * (i % 7 + 1)) + str(i) for i in range(23)]
    reports = []
    got = encode(model, texts, batch_size=4, cache_dir=tmp_path,
                 progress=lambda stage, done, total: reports.append((stage, done, total)))
    np.testing.assert_allclose(got, model.model.encode(texts, normalize_embeddings=True), atol=2e-3)
    done = [d for _, d, _ in reports]
    assert {(s, t) for s, _, t in reports} == {("encode", 23)}
    assert done == sorted(done) and done[0] == 0 and done[-1] == 23
    # the first cached slice is 23 rows at most (ChunkPacer's first 32), so every batch of 4 shows: 4, 8, ..., 20
    assert {4, 8, 12, 16, 20} <= set(done)


def test_changed_weights_recompute(tiny_bi_encoder_dir, tmp_path):
    import shutil

    import torch

    folder = tmp_path / "m"
    shutil.copytree(tiny_bi_encoder_dir, folder)
    texts = ["alpha", "beta"]
    before = np.array(encode(load_bi_encoder(str(folder), precision="fp32"), texts, cache_dir=tmp_path / "c"))
    model = load_bi_encoder(str(folder), precision="fp32").model
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.5)
    model.save(str(folder))
    after = np.array(encode(load_bi_encoder(str(folder), precision="fp32"), texts, cache_dir=tmp_path / "c"))
    assert len(list((tmp_path / "c" / "embeddings").iterdir())) == 2
    assert not np.allclose(before, after, atol=1e-3)


def test_block_wise_exact_search_over_a_memmap_equals_brute_force(tmp_path):
    from hnm_core.retrieve.vectors import exact_search, row_blocks

    rng = np.random.default_rng(3)
    docs = rng.standard_normal((50, 8)).astype(np.float16)
    np.save(tmp_path / "docs.npy", docs)
    mapped = np.load(tmp_path / "docs.npy", mmap_mode="r")
    assert np.array_equal(np.concatenate([b for _, b in row_blocks(mapped, 7)]), docs.astype(np.float32))
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    scores, indices = exact_search(mapped, queries, 5, block=7)
    full = queries @ docs.astype(np.float32).T
    assert np.array_equal(indices, np.argsort(-full, axis=1, kind="stable")[:, :5])
    assert np.allclose(scores, np.take_along_axis(full, indices, axis=1))
