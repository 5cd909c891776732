from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rank_bm25 import BM25Okapi

from hnm_core.retrieve.tokenize import tokenize
from hnm_core.data import load_collection
from hnm_core.errors import DataError, ExportError
from hnm_core.models.loading import load_bi_encoder
from hnm_core.pool import PoolParams, PoolStats, build_pool, load_pool, save_pool
from hnm_core.schema import POOL_COLUMNS, RANK_MEANINGS

from .conftest import shared_dataset


@pytest.fixture
def tiny_pool(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    return build_pool(tiny_collection, PoolParams.from_settings({"top_k": 4, "n_clusters": 3}), encoder=encoder,
                      cache_dir=tmp_path / "cache")


def test_schema(tiny_pool):
    assert list(tiny_pool.frame.columns) == list(POOL_COLUMNS)
    assert {c: str(t) for c, t in tiny_pool.frame.dtypes.items()} == POOL_COLUMNS


def test_positives_and_their_duplicates_are_never_candidates(tiny_pool, tiny_collection):
    frame = tiny_pool.frame
    cands = frame[~frame["is_positive"]]
    for qid, pos in tiny_collection.positives.items():
        assert not set(cands.loc[cands["query_id"] == qid, "doc_id"]) & set(pos)
        assert set(frame.loc[frame["is_positive"] & (frame["query_id"] == qid), "doc_id"]) == set(pos)
    # d11 is d01's text with other case and spacing: a positive of q1 under another id
    assert "d11" not in set(cands.loc[cands["query_id"] == "q1", "doc_id"])
    assert tiny_pool.stats.dropped_positive_duplicates >= 1


def test_each_source_contributes_its_top_k_with_contiguous_ranks(tiny_pool):
    cands = tiny_pool.frame[~tiny_pool.frame["is_positive"]]
    assert (cands["in_bm25"] | cands["in_dense"]).all()
    for _, group in cands.groupby("query_id"):
        for source in ("bm25", "dense"):
            ranks = sorted(group.loc[group[f"in_{source}"], f"{source}_rank"])
            assert ranks == list(range(1, min(4, len(ranks)) + 1))
            assert (group.loc[~group[f"in_{source}"], f"{source}_rank"] == 0).all()
        assert sorted(group["fused_rank"]) == list(range(1, len(group) + 1))


def test_rank_zero_means_not_ranked_in_every_rank_column(tiny_pool):
    frame = tiny_pool.frame
    for source in ("bm25", "dense"):
        # 0 exactly when the source did not rank the row, positives included
        assert ((frame[f"{source}_rank"] == 0) == ~frame[f"in_{source}"]).all()
    # positives are not fused, so they have no fused rank; every candidate has one
    assert ((frame["fused_rank"] == 0) == frame["is_positive"]).all()
    assert (frame.loc[frame["is_positive"], ["bm25_rank", "dense_rank"]].to_numpy() > 0).any()
    # the documented pool table quotes the one declared meaning of each rank column
    docs = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for column, meaning in RANK_MEANINGS.items():
        assert f"| `{column}` | int32 | {meaning} |" in docs
        assert "0 = not ranked" in meaning


def test_bm25_ranks_follow_rank_bm25_scores(tiny_pool, tiny_collection):
    reference = BM25Okapi([tokenize(t) for t in tiny_collection.doc_texts])
    frame = tiny_pool.frame
    for q, qid in enumerate(tiny_collection.query_ids):
        scores = reference.get_scores(tokenize(tiny_collection.query_texts[q]))
        rows = frame[frame["query_id"] == qid]
        expected = scores[rows["doc_id"].map(tiny_collection.doc_index).to_numpy()]
        np.testing.assert_allclose(rows["bm25_score"].to_numpy(), expected, rtol=1e-5)
        excluded = set(tiny_collection.positives[qid]) | ({"d11"} if qid == "q1" else set())
        ranked = [tiny_collection.doc_ids[i] for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i))
                  if tiny_collection.doc_ids[i] not in excluded and scores[i] > 0][:4]
        bm25_rows = rows[rows["in_bm25"] & ~rows["is_positive"]].sort_values("bm25_rank")
        assert bm25_rows["doc_id"].tolist() == ranked


def test_dense_scores_and_positive_similarity_are_exact(tiny_pool, tiny_collection):
    doc = np.asarray(tiny_pool.doc_embeddings, np.float32)
    query = np.asarray(tiny_pool.query_embeddings, np.float32)
    frame = tiny_pool.frame
    qi = frame["query_id"].map(tiny_collection.query_index).to_numpy()
    di = frame["doc_id"].map(tiny_collection.doc_index).to_numpy()
    np.testing.assert_allclose(frame["dense_score"], (query[qi] * doc[di]).sum(1), atol=1e-5)
    for row, q, d in zip(frame.itertuples(), qi, di):
        others = [tiny_collection.doc_index[p] for p in tiny_collection.positives[row.query_id]
                  if tiny_collection.doc_index[p] != d]
        if others:
            assert row.pos_sim_max == pytest.approx(max(doc[d] @ doc[o] for o in others), abs=1e-5)
        else:
            assert np.isnan(row.pos_sim_max)


def test_bm25_only_pool_leaves_dense_columns_empty(tiny_collection, tmp_path):
    pool = build_pool(tiny_collection, PoolParams.from_settings({"sources": ("bm25",), "top_k": 3}), cache_dir=tmp_path)
    frame = pool.frame
    assert not frame["in_dense"].any() and frame["dense_score"].isna().all() and (frame["cluster"] == -1).all()
    assert pool.doc_embeddings is None and "model" not in pool.meta
    assert (frame[~frame["is_positive"]].groupby("query_id").size() == 3).all()


def test_save_and_load_round_trip(tiny_pool, tmp_path):
    folder = save_pool(tiny_pool, tmp_path / "pool")
    again = load_pool(folder)
    pd.testing.assert_frame_equal(again.frame, tiny_pool.frame)
    assert again.collection.doc_texts == tiny_pool.collection.doc_texts
    assert dict(again.collection.positives) == dict(tiny_pool.collection.positives)
    np.testing.assert_array_equal(again.doc_embeddings, tiny_pool.doc_embeddings)
    assert again.stats == tiny_pool.stats
    with pytest.raises(ExportError, match="--overwrite"):
        save_pool(tiny_pool, folder)
    save_pool(tiny_pool, folder, overwrite=True)


def test_load_pool_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="missing pool.parquet.*Fix:"):
        load_pool(tmp_path)


@pytest.mark.slow
def test_cranfield_pool_with_minilm_and_warm_cache(session_cache):
    collection = load_collection(shared_dataset("cranfield"))
    cold = build_pool(collection, PoolParams.from_settings({"top_k": 50}), cache_dir=session_cache)
    frame = cold.frame
    cands = frame[~frame["is_positive"]]
    positives = {(q, d) for q in collection.query_ids for d in collection.positives[q]}
    assert not positives & set(zip(cands["query_id"], cands["doc_id"]))
    assert cands.groupby("query_id").size().between(50, 100).all()
    encoder = load_bi_encoder("all-MiniLM-L6-v2", max_seq_length=256)
    warm = build_pool(collection, PoolParams.from_settings({"top_k": 50}), cache_dir=session_cache,
                      encoder=encoder)
    assert not encoder.loaded  # every embedding came from the cache
    pd.testing.assert_frame_equal(warm.frame, frame)


def test_bm25_does_not_claim_documents_sharing_no_term(tiny_collection, tmp_path):
    pool = build_pool(tiny_collection, PoolParams.from_settings({"sources": ("bm25",), "top_k": 10}),
                      cache_dir=tmp_path)
    cands = pool.frame[~pool.frame["is_positive"]]
    assert (cands["bm25_score"] > 0).all()
    assert len(cands) < 10 * len(tiny_collection.query_ids)  # 12 docs: every query shares no term with some


def test_pool_sentences_agree_nouns_with_counts():
    stats = PoolStats(n_queries=1, n_candidates=1, n_positive_rows=1, dropped_positive_ids=1,
                      dropped_positive_duplicates=1)
    assert stats.sentences() == ["1 candidate for 1 query (1 labelled positive kept for scoring).",
                                 "Left out 1 retrieved labelled positive and 1 duplicate of a positive under another id."]
    stats = PoolStats(n_queries=2, n_candidates=0, n_positive_rows=3, dropped_positive_ids=0,
                      dropped_positive_duplicates=2)
    assert stats.sentences() == ["0 candidates for 2 queries (3 labelled positives kept for scoring).",
                                 "Left out 0 retrieved labelled positives and 2 duplicates of a positive under another "
                                 "id."]


def test_pool_built_in_tiny_query_blocks_equals_the_one_shot_pool(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    params = PoolParams.from_settings({"top_k": 4, "n_clusters": 3})
    whole = build_pool(tiny_collection, params, encoder=encoder, cache_dir=tmp_path / "cache")
    blocks = build_pool(tiny_collection, params, encoder=encoder, cache_dir=tmp_path / "cache", query_block=2)
    pd.testing.assert_frame_equal(whole.frame, blocks.frame)
    assert whole.stats == blocks.stats


def test_auto_index_goes_approximate_above_the_threshold_and_records_its_recall(tiny_collection,
                                                                                tiny_bi_encoder_dir, tmp_path):
    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    exact = build_pool(tiny_collection, PoolParams.from_settings({"top_k": 4}), encoder=encoder,
                       cache_dir=tmp_path / "cache")
    assert exact.meta["dense_index"] == {"kind": "exact", "docs": 12, "recall": 1.0, "k": 7, "queries": 0}
    approx = build_pool(tiny_collection, PoolParams.from_settings({"top_k": 4, "exact_max_docs": 11}),
                        encoder=encoder, cache_dir=tmp_path / "cache")
    info = approx.meta["dense_index"]
    assert info["kind"] == "ivf" and info["queries"] == 5 and info["k"] == 7
    # 12 documents make a single IVF cell, which is searched whole: the approximate index is exact here.
    assert info["recall"] == 1.0
    pd.testing.assert_frame_equal(exact.frame, approx.frame)
