import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hnm_core.audit import audit, hide_positives
from hnm_core.cli import main
from hnm_core.data import Collection
from hnm_core.errors import ExportError, ModelLoadError, SettingsError
from hnm_core.models.loading import check_cross_encoder, load_bi_encoder, load_cross_encoder, pair_key
from hnm_core.pool import PoolParams, build_pool
from hnm_core.teacher.scoring import TeacherParams, score_pool
from hnm_core.teacher.folds import ntuples
from hnm_core.teacher.training import fold_queries, train_teacher, training_rows

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
BAND = 2


def _train(collection, out, base, cache, **kwargs):
    settings = dict(base_model=str(base), folds=2, negatives_per_positive=2, band=BAND, epochs=1, batch_size=4,
                    max_length=64, seed=0, pool_settings={"model": str(base), "top_k": 8, "precision": "fp32"},
                    cache_dir=cache)
    return train_teacher(collection, out, **{**settings, **kwargs})


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def trained(tiny_bi_encoder_dir, tmp_path_factory):
    """A 2-fold teacher trained on the tiny collection, from the tiny bi-encoder (seconds)."""
    from tests.conftest import tiny_collection

    collection = tiny_collection.__wrapped__()
    root = tmp_path_factory.mktemp("teacher")
    result = _train(collection, root / "teacher", tiny_bi_encoder_dir, root / "cache")
    return collection, result, root


def test_folds_are_disjoint_cover_the_queries_and_keep_one_text_together(tiny_collection):
    twin = replace(tiny_collection, query_ids=(*tiny_collection.query_ids, "q1b"),
                   query_texts=(*tiny_collection.query_texts, tiny_collection.query_texts[0]),
                   positives={**tiny_collection.positives, "q1b": ("d09",)})
    for k in (2, 3):
        split = fold_queries(twin, k, seed=0)
        flat = [q for fold in split for q in fold]
        assert sorted(flat) == sorted(twin.query_ids) and len(flat) == len(set(flat))
        assert next(i for i, f in enumerate(split) if "q1" in f) == next(i for i, f in enumerate(split) if "q1b" in f)
    assert fold_queries(twin, 2, seed=0) == fold_queries(twin, 2, seed=0)


def test_training_rows_never_teach_a_candidate_of_the_band(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    frame = build_pool(tiny_collection, PoolParams.from_settings({"top_k": 8}), encoder=encoder, cache_dir=tmp_path).frame
    ids = tiny_collection.query_ids
    rows, counts = training_rows(frame, tiny_collection, ids, band=BAND, negatives_per_positive=2, seed=0)
    c = tiny_collection
    text_id = {t: d for d, t in zip(c.doc_ids, c.doc_texts)}
    qid_of = dict(zip(c.query_texts, c.query_ids))
    ranks = frame.set_index(["query_id", "doc_id"])
    for q_text, d_text, label in rows:
        qid, did = qid_of[q_text], text_id[d_text]
        if label == 1.0:
            assert did in c.positives[qid]
            continue
        row = ranks.loc[(qid, did)]
        assert not row["is_positive"]
        assert all(not 1 <= row[col] <= BAND for col in ("fused_rank", "bm25_rank", "dense_rank"))
    cand = frame[~frame["is_positive"]]
    in_band = sum(any(1 <= r[col] <= BAND for col in ("fused_rank", "bm25_rank", "dense_rank"))
                  for _, r in cand.iterrows())
    assert counts["in_band"] == in_band > 0
    assert counts["positives"] == sum(len(p) for p in c.positives.values())
    assert counts["negatives"] == sum(label == 0.0 for *_, label in rows) > 0
    again, _ = training_rows(frame, tiny_collection, ids[::-1], band=BAND, negatives_per_positive=2, seed=0)
    assert sorted(rows) == sorted(again)  # a query's negatives do not depend on which other queries train with it


def test_trained_teacher_is_cross_fitted_and_scores_each_query_with_the_fold_that_never_saw_it(trained, tmp_path):
    collection, result, root = trained
    out = result.out_dir
    assert result.trained == 2 and result.reused == 0
    assert check_cross_encoder(str(out)) == str(out.resolve())
    manifest = json.loads((out / "teacher.json").read_text())
    assert manifest["complete"] and manifest["settings"]["band"] == BAND and manifest["settings"]["seed"] == 0
    held = [set(f["query_ids"]) for f in manifest["folds"]]
    assert held[0].isdisjoint(held[1]) and held[0] | held[1] == set(collection.query_ids)
    for fold in result.folds:  # fold i trained on the other fold's queries only
        trained_on = set(json.loads((fold.path / "hnm_fold.json").read_text())["held_out"])
        assert trained_on == set(fold.query_ids)
        assert fold.train_queries == len(collection.query_ids) - len(fold.query_ids)

    encoder = load_bi_encoder(manifest["settings"]["pool"]["model"], precision="fp32")
    pool = build_pool(collection, PoolParams.from_settings({"top_k": 8}), encoder=encoder, cache_dir=root / "cache")
    scored = score_pool(pool, TeacherParams.from_settings(
        {"teacher": "cross-encoder", "teacher_model": str(out), "teacher_top_n": 3, "precision": "fp32"}),
        cache_dir=tmp_path)
    frame = scored.frame[scored.frame["teacher_raw"].notna()]
    members = [load_cross_encoder(str(f.path), precision="fp32") for f in result.folds]
    c = collection
    for i, fold in enumerate(result.folds):
        rows = frame[frame["query_id"].isin(fold.query_ids)]
        pairs = [(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]])
                 for q, d in zip(rows["query_id"], rows["doc_id"])]
        own = members[i].model.predict(pairs)
        other = members[1 - i].model.predict(pairs)
        np.testing.assert_allclose(rows["teacher_raw"], own, atol=1e-5)
        assert not np.allclose(rows["teacher_raw"], other, atol=1e-4)
    info = scored.meta["teacher"]["cross_fit"]
    assert info["rows_per_fold"] == [int(frame["query_id"].isin(f.query_ids).sum()) for f in result.folds]
    assert info["rows_unseen"] == 0


def test_a_query_no_fold_holds_gets_the_mean_of_the_fold_logits(trained, tmp_path):
    collection, result, root = trained
    new = Collection(name="other", doc_ids=collection.doc_ids, doc_texts=collection.doc_texts,
                     query_ids=("n1",), query_texts=("which snakes constrict their prey",), positives={"n1": ("d04",)})
    encoder = load_bi_encoder(str(result.manifest["settings"]["pool"]["model"]), precision="fp32")
    pool = build_pool(new, PoolParams.from_settings({"top_k": 4}), encoder=encoder, cache_dir=root / "cache")
    scored = score_pool(pool, TeacherParams.from_settings(
        {"teacher": "cross-encoder", "teacher_model": str(result.out_dir), "teacher_top_n": 2, "precision": "fp32"}),
        cache_dir=tmp_path)
    rows = scored.frame[scored.frame["teacher_raw"].notna()]
    pairs = [(new.query_texts[0], new.doc_texts[new.doc_index[d]]) for d in rows["doc_id"]]
    logits = [load_cross_encoder(str(f.path), precision="fp32").model.predict(pairs) for f in result.folds]
    np.testing.assert_allclose(rows["teacher_raw"], np.mean(logits, axis=0), atol=1e-5)
    assert scored.meta["teacher"]["cross_fit"]["rows_unseen"] == len(rows)


def test_a_rerun_keeps_finished_folds_and_retrains_a_lost_one_identically(trained, tiny_bi_encoder_dir, tmp_path):
    collection, result, root = trained
    out = tmp_path / "teacher"
    shutil.copytree(result.out_dir, out)
    before = (out / "fold-0" / "model.safetensors").stat().st_mtime_ns
    shutil.rmtree(out / "fold-1")
    again = _train(collection, out, tiny_bi_encoder_dir, root / "cache")
    assert (again.trained, again.reused) == (1, 1)
    assert [f.trained for f in again.folds] == [False, True]
    assert (out / "fold-0" / "model.safetensors").stat().st_mtime_ns == before
    original, retrained = _weights(result.out_dir / "fold-1"), _weights(out / "fold-1")  # seeded: same weights
    assert original.keys() == retrained.keys()
    for name in original:
        np.testing.assert_array_equal(original[name], retrained[name])
    done = _train(collection, out, tiny_bi_encoder_dir, root / "cache")
    assert (done.trained, done.reused) == (0, 2)


def test_an_interrupted_run_leaves_finished_folds_and_a_teacher_that_refuses_to_load(trained, tiny_bi_encoder_dir,
                                                                                     tmp_path):
    collection, _, root = trained
    out = tmp_path / "teacher"

    def stop_in_second_fold(stage, done, total):
        if stage.startswith("train teacher: fold 2") and done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(collection, out, tiny_bi_encoder_dir, root / "cache", progress=stop_in_second_fold)
    assert sorted(p.name for p in out.iterdir()) == ["fold-0", "teacher.json"]  # no half-written fold
    with pytest.raises(ModelLoadError, match="unfinished.*fold 1 of 2.*Fix: rerun"):
        load_cross_encoder(str(out))
    resumed = _train(collection, out, tiny_bi_encoder_dir, root / "cache")
    assert (resumed.trained, resumed.reused) == (1, 1)
    load_cross_encoder(str(out))


@pytest.mark.parametrize("kind", ["cross-encoder", "bi-encoder"])
def test_a_fold_stopped_after_a_checkpoint_resumes_to_the_same_weights(trained, trained_bi, tiny_bi_encoder_dir,
                                                                       tmp_path, kind):
    """Stopped in its second fold one step after a checkpoint, a teacher started again resumes that fold from the
    checkpoint (its steps reported at once) and ends with the weights of the teacher trained straight through."""
    collection, straight, root = trained if kind == "cross-encoder" else trained_bi
    options = {} if kind == "cross-encoder" else {"kind": "bi-encoder", "lr": 1e-3, "epochs": 3, "batch_size": 2}
    out, cache = tmp_path / "teacher", tmp_path / "cache"
    shutil.copytree(root / "cache", cache)  # the retrieval's embeddings, not the trainings
    assert not list(cache.glob("trainings/*"))  # the straight teacher's trainings left nothing

    def stop(stage, done, total):
        if stage.startswith("train teacher: fold 2") and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(collection, out, tiny_bi_encoder_dir, cache, progress=stop, checkpoint_minutes=1e-9, **options)
    assert [p.name for p in (cache / "trainings").glob("*/checkpoint-*")] == ["checkpoint-2"]
    calls = []
    resumed = _train(collection, out, tiny_bi_encoder_dir, cache, checkpoint_minutes=1e-9, **options,
                     progress=lambda *call: calls.append(call))
    assert [f.trained for f in resumed.folds] == [False, True]
    steps = [done for stage, done, _ in calls if stage == "train teacher: fold 2/2"]
    assert steps[:3] == [0, 2, 3] and steps == sorted(steps)
    for fold in ("fold-0", "fold-1"):
        a, b = _weights(straight.out_dir / fold), _weights(out / fold)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert list((cache / "trainings").iterdir()) == []


def test_other_settings_are_refused_unless_overwrite_and_different_seeds_differ(trained, tiny_bi_encoder_dir,
                                                                                tmp_path):
    collection, result, root = trained
    out = tmp_path / "teacher"
    shutil.copytree(result.out_dir, out)
    with pytest.raises(ExportError, match=r"other settings \(pool, seed\).*Fix: .*--overwrite"):
        _train(collection, out, tiny_bi_encoder_dir, root / "cache", seed=1)
    redone = _train(collection, out, tiny_bi_encoder_dir, root / "cache", seed=1, overwrite=True)
    assert redone.trained == 2
    a, b = _weights(result.out_dir / "fold-0"), _weights(out / "fold-0")
    assert any(not np.array_equal(a[name], b[name]) for name in a)


def test_the_training_precision_is_a_setting_of_the_folder_and_bf16_trains_other_weights(trained, tiny_bi_encoder_dir,
                                                                                       tmp_path):
    collection, _, root = trained
    runs = {p: _train(collection, tmp_path / p, tiny_bi_encoder_dir, root / "cache", precision=p)
            for p in ("fp32", "bf16")}
    for p, run in runs.items():
        assert run.manifest["settings"]["precision"] == p
    a, b = _weights(runs["fp32"].out_dir / "fold-0"), _weights(runs["bf16"].out_dir / "fold-0")
    assert all(a[name].dtype == b[name].dtype == np.float32 for name in a)  # mixed precision keeps fp32 weights
    assert any(not np.array_equal(a[name], b[name]) for name in a)
    with pytest.raises(ExportError, match=r"other settings \(precision\).*Fix: .*--overwrite"):
        _train(collection, tmp_path / "bf16", tiny_bi_encoder_dir, root / "cache", precision="fp32")


@pytest.mark.parametrize("kwargs, match", [
    ({"folds": 1}, "folds: 1 is below the minimum 2"),
    ({"precision": "fp16"}, "precision 'fp16' is not one of auto, fp32, bf16"),
    ({"folds": 6}, "leaves fold 5 empty.*Fix: pass --folds 5"),
    ({"band": -1}, "band: -1 is below the minimum 0"),
])
def test_bad_settings_fail_before_any_work(trained, tiny_bi_encoder_dir, tmp_path, kwargs, match):
    collection, _, root = trained
    with pytest.raises(SettingsError, match=match):
        _train(collection, tmp_path / "t", tiny_bi_encoder_dir, root / "cache", **kwargs)
    assert not (tmp_path / "t").exists()


def test_cli_train_teacher_refuses_an_out_in_the_data_or_a_file_before_any_work(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    (tmp_path / "file.txt").write_text("mine")
    for out, message in ((data / "teacher", "lies inside the input"), (data, "is the input"),
                         (tmp_path / "file.txt", "is a file")):
        assert main(["train-teacher", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert (tmp_path / "file.txt").read_text() == "mine" and not (tmp_path / "cache").exists()


def test_cli_train_teacher_then_mine_with_it(tiny_bi_encoder_dir, tmp_path, capsys):
    cache, teacher, mined = tmp_path / "cache", tmp_path / "teacher", tmp_path / "mined"
    common = ["--split", "train", "--model", str(tiny_bi_encoder_dir), "--top-k", "30", "--precision", "fp32",
              "--cache-dir", str(cache), "--quiet"]
    assert main(["train-teacher", str(SAMPLE), "--out", str(teacher), "--base-model", str(tiny_bi_encoder_dir),
                 "--folds", "2", "--teacher-epochs", "1", "--teacher-max-length", "64", *common]) == 0
    said = capsys.readouterr().out
    assert "2 folds trained, 0 kept" in said and f"--teacher-model {teacher}" in said
    assert main(["mine", str(SAMPLE), "--out", str(mined), "--teacher", "cross-encoder", "--teacher-model",
                 str(teacher), "--teacher-top-n", "5", *common]) == 0
    manifest = json.loads((mined / "pool" / "manifest.json").read_text())
    routing = manifest["teacher"]["cross_fit"]
    assert routing["folds"] == 2 and routing["rows_unseen"] == 0 and min(routing["rows_per_fold"]) > 0
    assert main(["train-teacher", str(SAMPLE), "--out", str(teacher), "--base-model", str(tiny_bi_encoder_dir),
                 "--folds", "3", "--teacher-epochs", "1", "--teacher-max-length", "64", *common]) == 2
    assert "already holds a teacher trained with other settings (folds)" in capsys.readouterr().err


def test_audit_refuses_a_teacher_that_saw_the_hidden_positives_and_takes_one_trained_on_the_visible(
        trained, tiny_bi_encoder_dir, tmp_path):
    collection, result, root = trained
    split = hide_positives(collection, hide=0.5, seed=0)
    (q, docs), = split.hidden.items()
    c = collection
    seen = json.loads((result.out_dir / "teacher.json").read_text())["trained_positives"]
    assert pair_key(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[docs[0]]]) in seen
    values = {"model": str(tiny_bi_encoder_dir), "teacher": "cross-encoder", "teacher_model": str(result.out_dir),
              "teacher_top_n": 5, "precision": "fp32", "top_k": 8, "negatives": 2, "hide": 0.5, "seed": 0}
    cache = tmp_path / "cache"
    with pytest.raises(SettingsError, match=r"was trained on 1 positive the audit hides .* Fix: train the teacher "
                                            r"on the visible positives only") as refused:
        audit(collection, values, cache_dir=cache)
    assert "\n" not in str(refused.value) and not cache.exists()  # refused before any mining

    honest = _train(split.apply(collection), root / "honest", tiny_bi_encoder_dir, root / "cache")
    report = audit(collection, {**values, "teacher_model": str(honest.out_dir)}, cache_dir=cache)
    assert report.teacher["checked"] is True and report.pool.meta["teacher"]["path"] == str(honest.out_dir.resolve())
    line = f"Teacher: cross-fitted cross-encoder {honest.out_dir}, trained without the 1 hidden positive."
    assert line in report.sentences() and json.loads(report.to_json())["teacher"]["summary"] == "t" + line[1:-1]
    miner = audit(collection, {**values, "teacher": "bi-encoder", "teacher_model": str(tiny_bi_encoder_dir)},
                  cache_dir=cache)
    assert f"Teacher: bi-encoder {tiny_bi_encoder_dir} (the miner)." in miner.sentences()


@pytest.mark.slow
def test_minilm_teacher_trained_on_sample_data_for_a_few_steps(tmp_path, session_cache):
    from hnm_core.data import load_collection
    from hnm_core.engines.local import mine

    collection = load_collection(SAMPLE, split="train")
    result = train_teacher(collection, tmp_path / "teacher", folds=2, negatives_per_positive=1, epochs=1,
                           batch_size=16, max_length=128, cache_dir=session_cache)
    assert result.trained == 2 and result.manifest["base"]["name"] == "all-MiniLM-L6-v2"
    pool = mine(collection, {"teacher": "cross-encoder", "teacher_model": str(result.out_dir), "teacher_top_n": 3},
                cache_dir=session_cache)
    scored = pool.frame["teacher_raw"].notna()
    assert np.isfinite(pool.frame.loc[scored, "teacher_raw"]).all()
    assert pool.meta["teacher"]["cross_fit"]["rows_unseen"] == 0


def _tiny_training(base) -> dict:
    """The teacher_train settings of `_train`, by name (what `hnm audit --train-teacher` reads)."""
    return {"base_model": str(base), "folds": 2, "negatives_per_positive": 2, "band": BAND, "teacher_epochs": 1,
            "teacher_batch_size": 4, "teacher_max_length": 64}


@pytest.mark.parametrize("teacher, members", [("bi-encoder", "dense"), ("ensemble", "cross-encoder,dense")])
def test_audit_trains_its_teacher_on_the_visible_positives_and_says_so(tiny_collection, tiny_bi_encoder_dir,
                                                                       tmp_path, teacher, members):
    values = {"model": str(tiny_bi_encoder_dir), "teacher": teacher, "teacher_members": members, "teacher_top_n": 5,
              "precision": "fp32", "top_k": 8, "negatives": 2, "hide": 0.5, "seed": 0,
              **_tiny_training(tiny_bi_encoder_dir)}
    folder = tmp_path / "teacher"
    report = audit(tiny_collection, values, cache_dir=tmp_path / "cache", train_teacher_dir=folder)
    c = tiny_collection
    split = report.split
    hidden = {pair_key(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]])
              for q, docs in split.hidden.items() for d in docs}
    visible = {pair_key(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]])
               for q, docs in c.positives.items() for d in docs} - hidden
    seen = set(json.loads((folder / "teacher.json").read_text())["trained_positives"])
    assert hidden and seen == visible and not seen & hidden
    entry = report.teacher
    assert entry["checked"] is True and entry["kind"] == ("ensemble" if teacher == "ensemble" else "cross-encoder")
    assert entry["trained_by_audit"] == {"folder": str(folder), "queries": 5, "visible_positives": 5,
                                         "hidden_positives_shown": 0, "hidden_positives": 1, "folds": 2,
                                         "trained_now": 2, "kept": 0}
    line = next(s for s in report.sentences() if s.startswith("Teacher:"))
    assert f"this audit trained it into {folder} on the 5 visible positives of 5 queries only, and never showed " \
           "it the 1 hidden positive." in line
    assert ("ensemble of cross-encoder, dense, whose cross-fitted" in line) == (teacher == "ensemble")
    assert json.loads(report.to_json())["teacher"]["trained_by_audit"]["hidden_positives_shown"] == 0
    assert report.pool.meta["settings"]["teacher_model"] == str(folder)


def test_hnm_audit_train_teacher_cli(tiny_bi_encoder_dir, tmp_path, capsys):
    common = ["--model", str(tiny_bi_encoder_dir), "--precision", "fp32", "--top-k", "10", "--negatives", "2",
              "--cache-dir", str(tmp_path / "cache"), "--quiet",
              *[f"--{k.replace('_', '-')}={v}" for k, v in _tiny_training(tiny_bi_encoder_dir).items()]]
    report = tmp_path / "report"
    assert main(["audit", str(SAMPLE), "--out", str(report), "--train-teacher", str(report / "teacher"),
                 *common]) == 2
    err = capsys.readouterr().err.strip()
    assert "lies inside the input" in err and len(err.splitlines()) == 1 and not report.exists()
    assert main(["audit", str(SAMPLE), "--out", str(report), "--train-teacher", str(tmp_path / "teacher"),
                 *common]) == 0
    said = capsys.readouterr().out
    assert f"this audit trained it into {tmp_path / 'teacher'} on the " in said
    saved = json.loads((report / "report.json").read_text())["teacher"]
    assert saved["kind"] == "cross-encoder" and saved["trained_by_audit"]["hidden_positives_shown"] == 0


def test_ntuples_deal_each_query_s_negatives_to_its_positives_in_turn():
    rows = [("q1", "p1", 1.0), ("q1", "p2", 1.0), ("q1", "n1", 0.0), ("q1", "n2", 0.0), ("q1", "n3", 0.0),
            ("q2", "p3", 1.0), ("q3", "p4", 1.0), ("q3", "n4", 0.0)]
    columns, untaught = ntuples(rows, 2)
    assert columns == {"anchor": ["q1", "q1", "q3"], "positive": ["p1", "p2", "p4"],
                       "negative_1": ["n1", "n3", "n4"], "negative_2": ["n2", "n1", "n4"]}
    assert untaught == 1  # q2 drew no negative beyond the band
    pairs, untaught = ntuples([row for row in rows if row[2] > 0], 2)  # a pool no deeper than the band
    assert pairs == {"anchor": ["q1", "q1", "q2", "q3"], "positive": ["p1", "p2", "p3", "p4"]} and untaught == 0


@pytest.fixture(scope="module")
def trained_bi(tiny_bi_encoder_dir, tmp_path_factory):
    """A 2-fold bi-encoder teacher trained on the tiny collection (seconds)."""
    from tests.conftest import tiny_collection

    collection = tiny_collection.__wrapped__()
    root = tmp_path_factory.mktemp("bi-teacher")
    result = _train(collection, root / "teacher", tiny_bi_encoder_dir, root / "cache", kind="bi-encoder", lr=1e-3,
                    epochs=3, batch_size=2)
    return collection, result, root


def _cosines(folder, queries, docs):
    model = load_bi_encoder(str(folder), precision="fp32").model
    q = model.encode(list(queries), normalize_embeddings=True)
    d = model.encode(list(docs), normalize_embeddings=True)
    return np.einsum("ij,ij->i", q, d)


def test_bi_encoder_teacher_is_cross_fitted_and_scores_each_query_by_cosine_of_its_unseen_fold(
        trained_bi, tiny_bi_encoder_dir, tmp_path):
    collection, result, root = trained_bi
    out = result.out_dir
    manifest = json.loads((out / "teacher.json").read_text())
    assert manifest["complete"] and manifest["model_kind"] == "bi-encoder"
    assert manifest["kind"] == "hnm cross-fitted bi-encoder teacher" and manifest["settings"]["kind"] == "bi-encoder"
    base = _weights(tiny_bi_encoder_dir)
    for fold in result.folds:  # each fold's weights moved away from the base model's
        moved = _weights(fold.path)
        assert any(not np.allclose(moved[name], base[name]) for name in base)
        assert set(json.loads((fold.path / "hnm_fold.json").read_text())["held_out"]) == set(fold.query_ids)

    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    pool = build_pool(collection, PoolParams.from_settings({"top_k": 8}), encoder=encoder, cache_dir=root / "cache")
    scored = score_pool(pool, TeacherParams.from_settings(
        {"teacher": "bi-encoder", "teacher_model": str(out), "precision": "fp32"}), cache_dir=tmp_path)
    frame = scored.frame
    assert frame["teacher_raw"].notna().all() and np.array_equal(frame["teacher_raw"], frame["teacher_score"])
    c = collection
    for i, fold in enumerate(result.folds):
        rows = frame[frame["query_id"].isin(fold.query_ids)]
        queries = [c.query_texts[c.query_index[q]] for q in rows["query_id"]]
        docs = [c.doc_texts[c.doc_index[d]] for d in rows["doc_id"]]
        np.testing.assert_allclose(rows["teacher_raw"], _cosines(fold.path, queries, docs), atol=2e-3)
        assert not np.allclose(rows["teacher_raw"], _cosines(result.folds[1 - i].path, queries, docs), atol=2e-3)
    meta = scored.meta["teacher"]
    assert meta["score"] == "cosine" and meta["cross_fit"]["rows_unseen"] == 0
    assert meta["cross_fit"]["rows_per_fold"] == [int(frame["query_id"].isin(f.query_ids).sum())
                                                  for f in result.folds]

    new = Collection(name="other", doc_ids=c.doc_ids, doc_texts=c.doc_texts, query_ids=("n1",),
                     query_texts=("which snakes constrict their prey",), positives={"n1": ("d04",)})
    unseen = score_pool(build_pool(new, PoolParams.from_settings({"top_k": 4}), encoder=encoder,
                                   cache_dir=root / "cache"),
                        TeacherParams.from_settings({"teacher": "bi-encoder", "teacher_model": str(out),
                                                     "precision": "fp32"}), cache_dir=tmp_path).frame
    docs = [new.doc_texts[new.doc_index[d]] for d in unseen["doc_id"]]
    mean = np.mean([_cosines(f.path, new.query_texts * len(docs), docs) for f in result.folds], axis=0)
    np.testing.assert_allclose(unseen["teacher_raw"], mean, atol=2e-3)


def test_a_teacher_folder_of_one_kind_is_refused_as_the_other_or_as_a_single_model(trained, trained_bi):
    ce, bi = trained[1].out_dir, trained_bi[1].out_dir
    for load in (lambda: load_cross_encoder(str(bi)), lambda: check_cross_encoder(str(bi))):
        with pytest.raises(ModelLoadError, match=r"is a cross-fitted bi-encoder teacher \(hnm train-teacher "
                                                 r"--teacher-kind bi-encoder\), not a cross-encoder\. Fix: mine "
                                                 r"with --teacher bi-encoder --teacher-model"):
            load()
    with pytest.raises(ModelLoadError, match=r"is a cross-fitted cross-encoder teacher \(hnm train-teacher\), not a "
                                             r"bi-encoder\. Fix: mine with --teacher cross-encoder"):
        load_bi_encoder(str(ce), as_teacher=True)
    with pytest.raises(ModelLoadError, match=r"only scores candidates\. Fix: pass it as --teacher-model with "
                                             r"--teacher bi-encoder, or one of its fold folders"):
        load_bi_encoder(str(bi))  # as a miner or a model to train
    assert load_bi_encoder(str(bi / "fold-0")).kind == "bi-encoder"


def test_cli_trains_a_bi_encoder_teacher_and_the_audit_vets_it(tiny_bi_encoder_dir, tmp_path, capsys):
    common = ["--model", str(tiny_bi_encoder_dir), "--precision", "fp32", "--top-k", "10", "--negatives", "2",
              "--cache-dir", str(tmp_path / "cache"), "--quiet", "--teacher-kind", "bi-encoder",
              *[f"--{k.replace('_', '-')}={v}" for k, v in _tiny_training(tiny_bi_encoder_dir).items()]]
    assert main(["audit", str(SAMPLE), "--out", str(tmp_path / "report"), "--train-teacher",
                 str(tmp_path / "teacher"), *common]) == 0
    said = capsys.readouterr().out
    assert f"Teacher: cross-fitted bi-encoder {tmp_path / 'teacher'}, trained without the " in said
    saved = json.loads((tmp_path / "report" / "report.json").read_text())["teacher"]
    assert saved["kind"] == "bi-encoder" and saved["checked"] is True
    # the same folder trained on every label has seen the positives an audit hides
    assert main(["train-teacher", str(SAMPLE), "--out", str(tmp_path / "all"), *common]) == 0
    assert "mine with `hnm mine DATA --teacher bi-encoder --teacher-model" in capsys.readouterr().out
    assert main(["audit", str(SAMPLE), "--out", str(tmp_path / "report2"), "--teacher", "bi-encoder",
                 "--teacher-model", str(tmp_path / "all"), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert "positives the audit hides" in err and len(err.splitlines()) == 1
    assert main(["audit", str(SAMPLE), "--out", str(tmp_path / "report3"), "--teacher", "ensemble",
                 "--train-teacher", str(tmp_path / "t3"), *common]) == 2
    assert "Fix: pass --teacher bi-encoder, or --teacher-kind cross-encoder" in capsys.readouterr().err
