import shutil
from pathlib import Path

import numpy as np
import pytest

from hnm_core.errors import ModelLoadError, SettingsError
from hnm_core.models.loading import load_bi_encoder, load_cross_encoder
from hnm_core.pool import PoolParams, build_pool
from hnm_core.teacher.scoring import TeacherParams, ensemble_scores, load_teacher, score_pool


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


def test_cross_encoder_scores_are_cached_and_keyed_by_their_batch(pool, tiny_cross_encoder_dir, tmp_path):
    """A rerun scores nothing; a larger top-N scores again the queries whose batches changed, and every run gives
    the bytes of a run on a fresh cache, whatever the shared cache held before."""
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
    # one batch (the queries of one block, batch size 64): it gained pairs, so all of them are scored again
    assert wider.totals["teacher: cross-encoder"] == int(c.frame["teacher_raw"].notna().sum()) > n_first
    alone = score_pool(pool, cross_encoder(4), model=fresh, cache_dir=tmp_path / "fresh")
    np.testing.assert_array_equal(c.frame["teacher_raw"], alone.frame["teacher_raw"])
    back = Recorder()
    d = score_pool(pool, cross_encoder(2), model=fresh, cache_dir=cache, progress=back)
    assert back.totals["teacher: cross-encoder"] == 0
    np.testing.assert_array_equal(a.frame["teacher_raw"], d.frame["teacher_raw"])


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


# ---------------------------------------------------------------------------------------------------------------------
# Ensemble teacher: members ranked within each query, percentiles averaged, each member's score kept


def _percentiles_by_hand(query_ids, members):
    """The reference: per query, over the rows every member scored, each member's mid-rank percentile with ties
    given their mean rank, averaged over members; NaN elsewhere."""
    out = np.full(len(query_ids), np.nan)
    scored = [i for i in range(len(query_ids)) if all(np.isfinite(m[i]) for m in members)]
    for q in set(query_ids):
        rows = [i for i in scored if query_ids[i] == q]
        for i in rows:
            pct = []
            for m in members:
                below = sum(m[j] < m[i] for j in rows)
                ties = sum(m[j] == m[i] for j in rows)
                pct.append((below + (ties + 1) / 2 - 0.5) / len(rows))
            out[i] = np.mean(pct)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ensemble_scores_match_per_query_percentiles_by_hand(seed):
    rng = np.random.default_rng(seed)
    n = 40
    query_ids = np.array([f"q{i}" for i in rng.integers(0, 4, n)], dtype=object)
    logit = rng.normal(0, 3, n)
    logit[rng.random(n) < 0.3] = np.nan  # a cross-encoder scores only its top N
    cosine = np.round(rng.uniform(-1, 1, n), 1)  # rounded: ties
    bm25 = rng.exponential(10, n)
    got = ensemble_scores(query_ids, [logit, cosine, bm25])
    np.testing.assert_allclose(got, _percentiles_by_hand(query_ids, [logit, cosine, bm25]), atol=1e-6)
    assert np.all((got[np.isfinite(got)] > 0) & (got[np.isfinite(got)] < 1))


def test_ensemble_scores_do_not_depend_on_a_members_scale():
    query_ids = np.array(["a"] * 5 + ["b"] * 5, dtype=object)
    cosine = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    bm25 = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 10.0, 30.0, 20.0, 50.0, 40.0])
    base = ensemble_scores(query_ids, [cosine, bm25])
    np.testing.assert_array_equal(base, ensemble_scores(query_ids, [cosine * 100 - 7, np.log(bm25)]))
    assert base[0] == pytest.approx((0.9 + 0.5) / 2)  # top cosine (4.5/5), third BM25 (2.5/5) of query a


def test_ensemble_of_a_cross_encoder_the_miner_and_bm25_keeps_each_members_score(pool, tiny_cross_encoder_dir,
                                                                                 tmp_path):
    params = TeacherParams.from_settings({"teacher": "ensemble", "teacher_members": "cross-encoder,dense,bm25",
                                          "teacher_model": str(tiny_cross_encoder_dir), "teacher_top_n": 3,
                                          "precision": "fp32"})
    scored = score_pool(pool, params, cache_dir=tmp_path)
    alone = score_pool(pool, cross_encoder(3, teacher_model=str(tiny_cross_encoder_dir), precision="fp32"),
                       cache_dir=tmp_path)
    frame = scored.frame
    mask = alone.frame["teacher_raw"].notna().to_numpy()
    np.testing.assert_array_equal(frame["teacher_cross_encoder"], alone.frame["teacher_raw"])
    np.testing.assert_array_equal(frame["teacher_dense"], np.where(mask, frame["dense_score"], np.nan))
    np.testing.assert_array_equal(frame["teacher_bm25"], np.where(mask, frame["bm25_score"], np.nan))
    expected = _percentiles_by_hand(frame["query_id"].to_numpy(object), [
        frame[c].to_numpy(np.float64) for c in ("teacher_cross_encoder", "teacher_dense", "teacher_bm25")])
    np.testing.assert_allclose(frame["teacher_score"], expected, atol=1e-6)
    assert frame["teacher_score"].notna().to_numpy().tolist() == mask.tolist()
    teacher = scored.meta["teacher"]
    assert teacher["kind"] == "ensemble" and teacher["top_n"] == 3
    assert [(m["member"], m["column"]) for m in teacher["members"]] == [
        ("cross-encoder", "teacher_cross_encoder"), ("dense", "teacher_dense"), ("bm25", "teacher_bm25")]
    assert teacher["members"][0]["fingerprint"] == alone.meta["teacher"]["fingerprint"]

    from hnm_core.pool import load_pool, save_pool

    back = load_pool(save_pool(scored, tmp_path / "pool"))
    assert list(back.frame.columns[-3:]) == ["teacher_cross_encoder", "teacher_dense", "teacher_bm25"]
    np.testing.assert_array_equal(back.frame["teacher_bm25"], frame["teacher_bm25"])
    rescored = score_pool(back, TeacherParams.from_settings({"teacher_model": "unused"}), model=load_bi_encoder(
        pool.meta["model"]["path"], precision="fp32"), cache_dir=tmp_path)
    assert "teacher_bm25" not in rescored.frame  # another teacher's scores leave no stale member columns


def test_ensemble_of_pool_scores_loads_no_model_and_scores_every_row(pool, tmp_path):
    params = TeacherParams.from_settings({"teacher": "ensemble", "teacher_members": "dense,bm25",
                                          "teacher_model": str(tmp_path / "no-such-model")})
    assert params.model_kind is None and load_teacher(params) is None
    frame = score_pool(pool, params, cache_dir=tmp_path).frame
    assert frame["teacher_score"].notna().all() and "teacher_cross_encoder" not in frame
    assert frame.groupby("query_id")["teacher_score"].max().gt(0.5).all()


@pytest.mark.parametrize("values, message", [
    ({"teacher": "ensemble", "teacher_members": "dense"}, "an ensemble needs two or more members"),
    ({"teacher": "ensemble", "teacher_members": "dense,dense"}, "an ensemble needs two or more members"),
    ({"teacher": "ensemble", "teacher_members": "dense,bm25", "sources": "dense"},
     r"bm25 scores come from the pool's sources, which are dense\. Fix: add bm25 to --sources"),
])
def test_an_ensemble_that_cannot_be_scored_is_refused_before_any_work(values, message):
    from hnm_core.engines.local import MiningParams

    with pytest.raises(SettingsError, match=message):
        MiningParams.from_settings(values)


def test_hnm_mine_with_an_ensemble_teacher_exports_the_member_columns(tiny_bi_encoder_dir, tmp_path):
    import json

    import pandas as pd

    from hnm_core.cli import main

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    out = tmp_path / "out"
    assert main(["mine", str(sample), "--out", str(out), "--model", str(tiny_bi_encoder_dir), "--precision", "fp32",
                 "--top-k", "10", "--teacher", "ensemble", "--teacher-members", "dense,bm25", "--formats", "pool",
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    exported = pd.read_parquet(out / "pool.parquet")
    assert {"teacher_dense", "teacher_bm25"} <= set(exported.columns)
    manifest = json.loads((out / "pool" / "manifest.json").read_text())
    assert manifest["settings"]["teacher_members"] == ["dense", "bm25"]
    assert [m["member"] for m in manifest["teacher"]["members"]] == ["dense", "bm25"]
