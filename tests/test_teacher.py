import shutil

import numpy as np
import pytest

from hnm_core.errors import ModelLoadError
from hnm_core.models import load_bi_encoder, load_cross_encoder
from hnm_core.pool import PoolParams, build_pool
from hnm_core.teacher import TeacherParams, score_pool


def cross_encoder(top_n: int, **settings) -> TeacherParams:
    return TeacherParams.from_settings({"teacher": "cross-encoder", "teacher_top_n": top_n, **settings})


@pytest.fixture
def pool(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    return build_pool(tiny_collection, PoolParams.from_settings({"top_k": 5}), encoder=encoder,
                      cache_dir=tmp_path / "cache")


class Recorder:
    def __init__(self):
        self.totals: dict[str, int] = {}

    def __call__(self, stage, done, total):
        self.totals[stage] = total


def test_miner_as_teacher_reuses_dense_scores_without_loading(pool, tiny_bi_encoder_dir, tmp_path):
    teacher = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    scored = score_pool(pool, TeacherParams.from_settings({"teacher": "bi-encoder"}), model=teacher,
                        cache_dir=tmp_path / "cache")
    assert not teacher.loaded
    np.testing.assert_array_equal(scored.frame["teacher_raw"], pool.frame["dense_score"])
    np.testing.assert_array_equal(scored.frame["teacher_score"], pool.frame["dense_score"])
    assert scored.meta["teacher"]["kind"] == "bi-encoder"
    assert pool.frame["teacher_raw"].isna().all()  # the input pool is not modified


def test_other_bi_encoder_teacher_scores_every_row(pool, tiny_bi_encoder_dir, tmp_path):
    import torch

    other = tmp_path / "other"
    shutil.copytree(tiny_bi_encoder_dir, other)
    model = load_bi_encoder(str(other), precision="fp32").model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.sign(p))
    model.save(str(other))
    teacher = load_bi_encoder(str(other), precision="fp32")
    scored = score_pool(pool, TeacherParams.from_settings({}), model=teacher, cache_dir=tmp_path / "cache")
    c = pool.collection
    frame = scored.frame
    q = teacher.model.encode([c.query_texts[c.query_index[x]] for x in frame["query_id"]], normalize_embeddings=True)
    d = teacher.model.encode([c.doc_texts[c.doc_index[x]] for x in frame["doc_id"]], normalize_embeddings=True)
    np.testing.assert_allclose(frame["teacher_raw"], (q * d).sum(1), atol=3e-3)
    assert not np.allclose(frame["teacher_raw"], frame["dense_score"], atol=1e-3)


def test_cross_encoder_scores_positives_and_top_n_only(pool, tiny_cross_encoder_dir, tmp_path):
    teacher = load_cross_encoder(str(tiny_cross_encoder_dir), precision="fp32")
    scored = score_pool(pool, cross_encoder(2), model=teacher, cache_dir=tmp_path / "cache")
    frame = scored.frame
    expected = frame["is_positive"] | frame["fused_rank"].between(1, 2)
    assert (frame["teacher_raw"].notna() == expected).all()
    c = pool.collection
    rows = frame[expected]
    pairs = [(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]]) for q, d in zip(rows["query_id"], rows["doc_id"])]
    direct = teacher.model.predict(pairs)
    np.testing.assert_allclose(rows["teacher_raw"], direct, atol=1e-5)
    np.testing.assert_allclose(rows["teacher_score"], 1 / (1 + np.exp(-direct)), atol=1e-6)
    assert scored.meta["teacher"]["top_n"] == 2
    assert scored.meta["teacher"]["score"] == "sigmoid(logit)"


def test_cross_encoder_scores_are_cached_and_extended(pool, tiny_cross_encoder_dir, tmp_path):
    cache = tmp_path / "cache"
    first = Recorder()
    a = score_pool(pool, cross_encoder(2, teacher_model=str(tiny_cross_encoder_dir), precision="fp32"),
                   cache_dir=cache, progress=first)
    n_first = first.totals["teacher: cross-encoder"]
    assert n_first == int(a.frame["teacher_raw"].notna().sum())
    fresh = load_cross_encoder(str(tiny_cross_encoder_dir), precision="fp32")
    again = Recorder()
    b = score_pool(pool, cross_encoder(2), model=fresh, cache_dir=cache, progress=again)
    assert again.totals["teacher: cross-encoder"] == 0 and not fresh.loaded
    np.testing.assert_array_equal(a.frame["teacher_raw"], b.frame["teacher_raw"])
    wider = Recorder()
    c = score_pool(pool, cross_encoder(4), model=fresh, cache_dir=cache, progress=wider)
    n_new = int(c.frame["teacher_raw"].notna().sum()) - n_first
    assert wider.totals["teacher: cross-encoder"] == n_new > 0


def test_missing_cross_encoder_fails_with_the_fix(pool, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Fix:"):
        score_pool(pool, TeacherParams.from_settings({"teacher": "cross-encoder",
                                                      "teacher_model": "cross-encoder/ms-marco-MiniLM-L6-v2"}),
                   cache_dir=tmp_path)


def test_bf16_cross_encoder_runs_in_bf16_and_agrees_with_fp32(pool, tiny_cross_encoder_dir, tmp_path):
    import torch

    fp32 = load_cross_encoder(str(tiny_cross_encoder_dir), precision="fp32")
    bf16 = load_cross_encoder(str(tiny_cross_encoder_dir), precision="bf16")
    assert {p.dtype for p in bf16.model.model.parameters()} == {torch.bfloat16}
    assert bf16.fingerprint != fp32.fingerprint  # their scores are cached apart
    params = TeacherParams.from_settings({"teacher": "cross-encoder", "teacher_top_n": 4})
    a = score_pool(pool, params, model=fp32, cache_dir=tmp_path)
    b = score_pool(pool, params, model=bf16, cache_dir=tmp_path)
    assert b.meta["teacher"]["precision"] == "bf16"
    np.testing.assert_allclose(b.frame["teacher_raw"], a.frame["teacher_raw"], atol=0.05)
