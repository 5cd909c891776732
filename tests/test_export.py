"""export: every format through `datasets.load_dataset`, overwrite refusal, atomicity, the manifest, round diffs; and
real sentence-transformers training steps on the exported files with a tiny random bi-encoder."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hnm_core.curate.rules import CurateParams, curate
from hnm_core.data import Collection
from hnm_core.errors import DataError, ExportError
from hnm_core.export.formats import export
from hnm_core.outputs.marker import MARKER
from hnm_core.pool import Pool, PoolStats
from hnm_core.prove.rounds import diff_rounds
from hnm_core.schema import POOL_COLUMNS

from .test_curate import OFF, pool_frame

NAN = float("nan")
DOCS = {
    "d1": "Attention weighs every token against every other token.",
    "d2": "Multi-head attention runs attention functions in parallel.",
    "d3": "Ça coûte: l'attention sélective (σ) filtre — café naïve.",
    "d4": "A biological cell is the basic unit of life.",
    "d5": "Python is a programming language.",
    "d6": "Pythons are large snakes.",
    "d7": "A bank lends money.",
    "d8": "A river bank is land beside a river.",
}
QUERIES = {"q1": "how does attention work", "q2": "l'attention sélective, c'est quoi ?", "q3": "what is a cell",
           "q4": "python language"}


def rows() -> list[dict]:
    """q1: two positives, 3 hard candidates. q2: one unscored candidate. q3: an unscored positive. q4: one hard only."""
    def pos(q, d, s):
        return {"query_id": q, "doc_id": d, "is_positive": True, "teacher_score": s}

    def cand(q, d, s, r):
        return {"query_id": q, "doc_id": d, "teacher_score": s, "fused_rank": r, "bm25_rank": r}

    return [
        pos("q1", "d1", 0.9), pos("q1", "d2", 0.85), cand("q1", "d5", 0.6, 1), cand("q1", "d6", 0.5, 2),
        cand("q1", "d7", 0.4, 3),
        pos("q2", "d3", 0.8), cand("q2", "d5", 0.7, 1), cand("q2", "d6", NAN, 2), cand("q2", "d8", 0.3, 3),
        pos("q3", "d4", NAN), cand("q3", "d7", 0.2, 1), cand("q3", "d8", 0.1, 2),
        pos("q4", "d5", 0.7), cand("q4", "d1", 0.3, 1),
    ]


def make_pool(frame: pd.DataFrame) -> Pool:
    collection = Collection(
        name="tiny", doc_ids=tuple(DOCS), doc_texts=tuple(DOCS.values()), query_ids=tuple(QUERIES),
        query_texts=tuple(QUERIES.values()),
        positives={"q1": ("d1", "d2"), "q2": ("d3",), "q3": ("d4",), "q4": ("d5",)},
    )
    n_pos = int(frame["is_positive"].sum())
    stats = PoolStats(n_queries=4, n_candidates=len(frame) - n_pos, n_positive_rows=n_pos, dropped_positive_ids=0,
                      dropped_positive_duplicates=0)
    meta = {"settings": {"top_k": 3, "model": "tiny-bi"}, "collection": {"name": "tiny", "source": "inline"},
            "model": {"name": "tiny-bi", "fingerprint": "model-fp"},
            "teacher": {"kind": "bi-encoder", "name": "tiny-bi", "fingerprint": "teacher-fp"}}
    return Pool(frame, collection, stats, meta)


@pytest.fixture
def pool() -> Pool:
    return make_pool(pool_frame(rows()))


PARAMS = CurateParams(**OFF, negatives=2, seed=5)

# Selected with PARAMS (top 2 of the hard band): q1 d5, d6; q2 d5, d8; q3 d7, d8; q4 d1 (short).
TRIPLETS = [("q1", "d1", "d5"), ("q1", "d1", "d6"), ("q1", "d2", "d5"), ("q1", "d2", "d6"),
            ("q2", "d3", "d5"), ("q2", "d3", "d8"), ("q3", "d4", "d7"), ("q3", "d4", "d8"), ("q4", "d5", "d1")]


def load(path: Path, tmp_path: Path):
    import datasets

    kind = "parquet" if path.suffix == ".parquet" else "json"
    return datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))


def texts(rows_: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [(QUERIES[q], *(DOCS[d] for d in docs)) for q, *docs in rows_]


def test_triplets_of_one_text_are_written_once(pool, tmp_path):
    import dataclasses

    # d8 takes d7's text: q3 samples both, so its rows (d4, d7) and (d4, d8) read alike
    texts_ = tuple(DOCS["d7"] if d == "d8" else t for d, t in DOCS.items())
    twin = dataclasses.replace(pool, collection=dataclasses.replace(pool.collection, doc_texts=texts_))
    result = export(twin, curate(twin.frame, PARAMS), tmp_path / "out", formats="triplet")
    triplets = pd.read_parquet(tmp_path / "out" / "triplet.parquet")
    assert not triplets.duplicated().any() and len(triplets) == len(TRIPLETS) - 1
    assert result.manifest["files"]["triplet.parquet"]["duplicate_rows"] == 1
    assert (QUERIES["q3"], DOCS["d4"], DOCS["d7"]) in set(triplets.itertuples(index=False, name=None))


@pytest.mark.parametrize("file_type", ["parquet", "jsonl"])
def test_sentence_transformers_formats_round_trip_through_datasets(pool, tmp_path, file_type):
    result = export(pool, curate(pool.frame, PARAMS), tmp_path / "out",
                    formats="triplet,ntuple,ntuple_scores,labeled_pair", file_type=file_type)
    ext = "." + file_type
    files = {p.name for p in result.paths}
    assert files == {f"{n}{ext}" for n in ("triplet", "ntuple", "ntuple_scores", "labeled_pair")} | {"manifest.json"}

    triplet = load(tmp_path / "out" / f"triplet{ext}", tmp_path)
    assert triplet.column_names == ["anchor", "positive", "negative"]
    assert [tuple(r.values()) for r in triplet] == texts(TRIPLETS)

    ntuple = load(tmp_path / "out" / f"ntuple{ext}", tmp_path)
    assert ntuple.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    full = [("q1", "d1", "d5", "d6"), ("q1", "d2", "d5", "d6"), ("q2", "d3", "d5", "d8"), ("q3", "d4", "d7", "d8")]
    assert [tuple(r.values()) for r in ntuple] == texts(full)

    scores = load(tmp_path / "out" / f"ntuple_scores{ext}", tmp_path)
    assert scores.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert [tuple(r[c] for c in scores.column_names[:-1]) for r in scores] == texts(full[:3])  # q3's positive unscored
    np.testing.assert_allclose(scores["label"], [[0.9, 0.6, 0.5], [0.85, 0.6, 0.5], [0.8, 0.7, 0.3]], rtol=1e-6)

    pairs = load(tmp_path / "out" / f"labeled_pair{ext}", tmp_path)
    assert pairs.column_names == ["anchor", "positive", "label"]
    expected = [("q1", "d1", 1), ("q1", "d2", 1), ("q1", "d5", 0), ("q1", "d6", 0), ("q2", "d3", 1),
                ("q2", "d5", 0), ("q2", "d8", 0), ("q3", "d4", 1), ("q3", "d7", 0), ("q3", "d8", 0),
                ("q4", "d5", 1), ("q4", "d1", 0)]
    assert [tuple(r.values()) for r in pairs] == [(QUERIES[q], DOCS[d], label) for q, d, label in expected]

    notes = result.manifest["files"]
    assert notes[f"triplet{ext}"] == {"format": "triplet", "rows": 9, "queries_without_negatives": 0,
                                     "duplicate_rows": 0}
    assert notes[f"ntuple{ext}"] == {"format": "ntuple", "rows": 4, "skipped_queries": 1, "skipped_positives": 1}
    assert notes[f"ntuple_scores{ext}"]["unscored_positives"] == 1


def test_flag_jsonl_has_flagembedding_keys_and_ids(pool, tmp_path):
    export(pool, curate(pool.frame, PARAMS), tmp_path / "out", formats=["flag"])
    lines = (tmp_path / "out" / "flag.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["query_id"] for r in records] == ["q1", "q2", "q3", "q4"]
    q1 = records[0]
    assert set(q1) == {"query", "pos", "neg", "pos_scores", "neg_scores", "query_id", "pos_ids", "neg_ids"}
    assert (q1["query"], q1["pos_ids"], q1["neg_ids"]) == (QUERIES["q1"], ["d1", "d2"], ["d5", "d6"])
    assert q1["pos"] == [DOCS["d1"], DOCS["d2"]] and q1["neg"] == [DOCS["d5"], DOCS["d6"]]
    np.testing.assert_allclose(q1["pos_scores"] + q1["neg_scores"], [0.9, 0.85, 0.6, 0.5], rtol=1e-6)
    assert records[2]["pos_scores"] == [None]  # unscored positive: JSON null, never NaN
    assert "σ" in lines[1]  # written as UTF-8, not \u escapes
    assert load(tmp_path / "out" / "flag.jsonl", tmp_path).num_rows == 4


def test_pool_format_holds_every_row_with_labels_and_ids_not_texts(pool, tmp_path):
    curation = curate(pool.frame, CurateParams(**{**OFF, "floor": 0.25}, negatives=2))
    export(pool, curation, tmp_path / "out", formats="pool")
    ds = load(tmp_path / "out" / "pool.parquet", tmp_path)
    assert set(POOL_COLUMNS) | {"label", "selected", "neg_rank", "reason"} == set(ds.column_names)
    frame = ds.to_pandas()
    assert frame["label"].tolist() == list(curation.labels)
    assert frame["selected"].tolist() == curation.selected.tolist()
    assert frame["neg_rank"].tolist() == curation.neg_rank.tolist()
    assert frame["doc_id"].tolist() == pool.frame["doc_id"].tolist()
    assert frame["query_id"].tolist() == pool.frame["query_id"].tolist()
    assert frame["reason"].tolist() == [
        "labelled positive", "labelled positive", "hard band, rank 1 of 3: selected",
        "hard band, rank 2 of 3: selected", "hard band, rank 3 of 3: not sampled (quota 2)",
        "labelled positive", "hard band, rank 1 of 2: selected", "not scored by the teacher (outside teacher_top_n)",
        "hard band, rank 2 of 2: selected",
        "labelled positive", "teacher 0.20 < floor 0.25", "teacher 0.10 < floor 0.25",
        "labelled positive", "hard band, rank 1 of 1: selected",
    ]


def test_manifest_records_settings_fingerprints_versions_and_counts(pool, tmp_path):
    curation = curate(pool.frame, PARAMS)
    result = export(pool, curation, tmp_path / "out", formats="triplet,pool", extra_manifest={"command": "hnm x"})
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == result.manifest
    assert manifest["settings"]["top_k"] == 3 and manifest["settings"]["negatives"] == 2
    assert manifest["settings"]["formats"] == ["triplet", "pool"] and manifest["settings"]["file_type"] == "parquet"
    assert manifest["fingerprints"] == {"model": "model-fp", "teacher": "teacher-fp"}
    assert {"numpy", "pandas", "sentence-transformers", "torch"} <= set(manifest["versions"])
    assert manifest["seed"] == 5
    assert manifest["counts"] == {rc.label: rc.count for rc in curation.counts}
    assert sum(manifest["counts"].values()) == len(pool.frame)
    assert (manifest["short_queries"], manifest["n_queries"], manifest["n_full_quota"]) == (1, 4, 3)
    assert manifest["files"]["triplet.parquet"]["rows"] == 9 and manifest["files"]["pool.parquet"]["rows"] == 14
    assert manifest["command"] == "hnm x"
    assert datetime.fromisoformat(manifest["created_utc"]).utcoffset().total_seconds() == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "manifest.json", "pool.parquet",
                                                                    "triplet.parquet"]


def test_manifest_says_which_reference_auto_chose_and_why(pool, tmp_path):
    fixed = curate(pool.frame, dataclasses.replace(PARAMS, relative_margin=0.05, margin_ref="min"))
    assert "margin_ref_auto" not in export(pool, fixed, tmp_path / "fixed").manifest
    curation = curate(pool.frame, dataclasses.replace(PARAMS, relative_margin=0.05, margin_ref="auto"))
    manifest = export(pool, curation, tmp_path / "auto").manifest
    assert manifest["settings"]["margin_ref"] == "auto"
    assert manifest["margin_ref_auto"] == {"chose": curation.margin_ref, "positive_like_share": curation.auto_share,
                                           "threshold": 0.15}
    assert curation.auto_note in " ".join(manifest["summary"])


def test_refuses_a_non_empty_folder_unless_overwrite(pool, tmp_path):
    out = tmp_path / "out"
    curation = curate(pool.frame, PARAMS)
    export(pool, curation, out, formats="triplet")
    with pytest.raises(ExportError, match="pass --overwrite"):
        export(pool, curation, out, formats="ntuple")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "manifest.json", "triplet.parquet"]
    export(pool, curation, out, formats="ntuple", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "manifest.json", "ntuple.parquet"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    export(pool, curation, empty, formats="triplet")
    assert (empty / "triplet.parquet").exists()


def test_a_failed_export_leaves_nothing_behind(pool, tmp_path):
    curation = curate(pool.frame, PARAMS)
    # The manifest is written last, after every data file: a bad value fails the export at the very end.
    with pytest.raises(ExportError, match="manifest"):
        export(pool, curation, tmp_path / "out", formats="triplet,flag,pool", extra_manifest={"bad": object()})
    assert list(tmp_path.iterdir()) == []
    export(pool, curation, tmp_path / "out", formats="triplet")
    with pytest.raises(ExportError, match="manifest"):
        export(pool, curation, tmp_path / "out", formats="pool", overwrite=True, extra_manifest={"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "manifest.json", "triplet.parquet"]


def test_curation_of_another_pool_or_unknown_ids_are_refused(pool, tmp_path):
    other = curate(pool.frame.iloc[:5], PARAMS)
    with pytest.raises(ExportError, match="run curate on this pool"):
        export(pool, other, tmp_path / "a", formats="triplet")
    frame = pool.frame.copy()
    frame.loc[2, "doc_id"] = "d99"
    stray = make_pool(frame)
    with pytest.raises(ExportError, match="doc id 'd99' in the pool is not in the collection 'tiny'"):
        export(stray, curate(frame, PARAMS), tmp_path / "b", formats="triplet")
    assert list(tmp_path.iterdir()) == []


def test_diff_rounds_compares_selected_negatives_and_labels(pool, tmp_path):
    a = curate(pool.frame, PARAMS)
    export(pool, a, tmp_path / "a", formats="pool")
    # Round B: a floor of 0.35 makes q2/d8 (0.3), q3/d7, q3/d8 (0.2, 0.1) and q4/d1 (0.3) easy; the quota grows to 3.
    b = curate(pool.frame, CurateParams(**{**OFF, "floor": 0.35}, negatives=3, seed=5))
    export(pool, b, tmp_path / "b", formats="pool")
    diff = diff_rounds(tmp_path / "a", tmp_path / "b")
    # A: q1 d5 d6, q2 d5 d8, q3 d7 d8, q4 d1 = 7. B (quota 3): q1 d5 d6 d7, q2 d5 = 4.
    assert (diff.a_selected, diff.b_selected, diff.overlap) == (7, 4, 3)
    assert diff.jaccard == pytest.approx(3 / 8)
    assert (diff.a_dropped, diff.a_now_easy, diff.new_in_b) == (4, 4, 1)
    moves = {(t.before, t.after): t.count for t in diff.transitions}
    assert moves == {("positive", "positive"): 5, ("hard", "hard"): 4, ("hard", "easy"): 4,
                     ("unscored", "unscored"): 1}
    assert sum(moves.values()) == len(pool.frame)
    assert diff.sentences()[0] == "Round B kept 3 of round A's 7 selected negatives (Jaccard 0.38 over 7 and 4)."
    assert diff.sentences()[-1] == "Label changes: 4 hard → easy."


def test_diff_rounds_needs_the_pool_format(pool, tmp_path):
    export(pool, curate(pool.frame, PARAMS), tmp_path / "a", formats="triplet")
    with pytest.raises(DataError, match="'pool' format"):
        diff_rounds(tmp_path / "a", tmp_path / "a")


def test_diff_rounds_refuses_duplicate_pairs(tmp_path):
    frame = pool_frame(rows()[:5] + [rows()[2]])
    export(make_pool(frame), curate(frame, PARAMS), tmp_path / "a", formats="pool")
    with pytest.raises(DataError, match="1 \\(query_id, doc_id\\) pairs appear more than once"):
        diff_rounds(tmp_path / "a", tmp_path / "a")


# ---------------------------------------------------------------------------------------------------------------------
# Real clients: sentence-transformers reads and trains on what we write


def test_labeled_pair_columns_match_sentence_transformers(pool, tmp_path, tiny_bi_encoder_dir):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(str(tiny_bi_encoder_dir), device="cpu")
    pairs = Dataset.from_dict({"anchor": list(QUERIES.values()), "positive": [DOCS[d] for d in ("d1", "d3", "d4",
                                                                                                  "d5")]})
    mined = mine_hard_negatives(pairs, model, corpus=list(DOCS.values()), num_negatives=2,
                                output_format="labeled-pair", verbose=False)
    export(pool, curate(pool.frame, PARAMS), tmp_path / "out", formats="labeled_pair")
    ours = load(tmp_path / "out" / "labeled_pair.parquet", tmp_path)
    assert ours.column_names == mined.column_names
    assert ours.features["label"].dtype == mined.features["label"].dtype


def train_one_step(model_dir: Path, dataset, loss_name: str, tmp_path: Path) -> None:
    """One optimiser step of SentenceTransformerTrainer; asserts a finite loss and that the weights moved."""
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses

    model = SentenceTransformer(str(model_dir), device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "train"), max_steps=1,
                                                per_device_train_batch_size=4, learning_rate=1e-2,
                                                report_to="none", save_strategy="no", use_cpu=True, seed=0,
                                                dataloader_num_workers=0, disable_tqdm=True)
    loss = getattr(losses, loss_name)(model)
    out = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
    assert out.global_step == 1 and math.isfinite(out.training_loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_one_training_step_on_exported_triplets(pool, tmp_path, tiny_bi_encoder_dir):
    export(pool, curate(pool.frame, PARAMS), tmp_path / "out", formats="triplet")
    train_one_step(tiny_bi_encoder_dir, load(tmp_path / "out" / "triplet.parquet", tmp_path),
                   "MultipleNegativesRankingLoss", tmp_path)


def test_one_margin_mse_step_on_exported_ntuple_scores(pool, tmp_path, tiny_bi_encoder_dir):
    export(pool, curate(pool.frame, PARAMS), tmp_path / "out", formats="ntuple_scores", file_type="jsonl")
    train_one_step(tiny_bi_encoder_dir, load(tmp_path / "out" / "ntuple_scores.jsonl", tmp_path), "MarginMSELoss",
                   tmp_path)
