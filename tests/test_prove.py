"""The proof loop on sample_data's train/dev splits with the tiny bi-encoder of conftest.py and a few steps: the
table's shape, the rows each arm trained on, the arm cache, and the naive arm's negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hnm_core.cli import main
from hnm_core.data import load_collection
from hnm_core.prove import ARMS, HEADLINE, load_proof

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def _prove(model: Path, out: Path, cache: Path, *flags: str) -> int:
    tiny = ["--model", str(model), "--teacher-model", str(model), "--train-model", str(model), "--max-seq-length", "64",
            "--top-k", "20", "--negatives", "3", "--max-pairs", "12", "--train-batch-size", "4", "--lr", "1e-3"]
    return main(["prove", str(SAMPLE), "--train-split", "train", "--test-split", "dev", *tiny, "--out", str(out),
                 "--cache-dir", str(cache), "--quiet", *flags])


def test_prove_trains_every_arm_alike_and_a_rerun_reuses_them(tiny_bi_encoder_dir, tmp_path, capsys):
    out, cache = tmp_path / "proof", tmp_path / "cache"
    assert _prove(tiny_bi_encoder_dir, out, cache, "--seeds", "0") == 0
    table = capsys.readouterr().out
    report = json.loads((out / "prove.json").read_text())
    assert [arm["arm"] for arm in report["arms"]] == list(ARMS)
    assert all(0.0 <= arm["mean"][name] <= 1.0 for arm in report["arms"] for name in HEADLINE)
    assert all(line.split()[0] in ARMS for line in table.splitlines()[2:6])
    assert report["trained_now"] == 3 and report["settings"]["negatives"] == 3

    runs = {run["arm"]: run for run in report["runs"]}
    assert runs["zero"]["rows"] == 0 and not runs["zero"]["trained_now"]
    for arm in ("pairs", "naive", "hnm"):
        rows_in_file = pq.read_table(runs[arm]["training_file"]).num_rows
        manifest = json.loads((Path(runs[arm]["model"]) / "manifest.json").read_text())
        assert manifest["rows_in_file"] == rows_in_file and manifest["export"]["file"] == runs[arm]["training_file"]
        assert runs[arm]["rows"] == manifest["rows"] == min(12, rows_in_file)
        assert runs[arm]["fingerprint"] == manifest["fingerprint"]

    collection = load_collection(SAMPLE, split="train")
    labelled = sum(len(collection.positives.get(q, ())) for q in collection.query_ids)
    assert pq.read_table(runs["pairs"]["training_file"]).column_names == ["anchor", "positive"]
    assert pq.read_table(runs["pairs"]["training_file"]).num_rows == labelled
    naive = pq.read_table(runs["naive"]["training_file"]).to_pylist()
    positives = {}
    for qid, text in zip(collection.query_ids, collection.query_texts):
        positives.setdefault(text, set()).update(collection.doc_texts[collection.doc_index[d]]
                                                 for d in collection.positives.get(qid, ()))
    assert naive and all(len(row) == 5 for row in naive)  # anchor, positive and --negatives 3
    assert not [row for row in naive for k in (1, 2, 3) if row[f"negative_{k}"] in positives[row["anchor"]]]

    # a rerun extended by a seed trains only that seed; the arms it has keep their models untouched
    created = {arm: json.loads((Path(runs[arm]["model"]) / "manifest.json").read_text())["created_utc"]
               for arm in ("pairs", "hnm")}
    assert _prove(tiny_bi_encoder_dir, out, cache, "--seeds", "0,1", "--arms", "pairs,hnm") == 0
    again = json.loads((out / "prove.json").read_text())
    assert {(r["arm"], r["seed"], r["trained_now"]) for r in again["runs"]} == {
        ("pairs", 0, False), ("hnm", 0, False), ("pairs", 1, True), ("hnm", 1, True)}
    for arm in ("pairs", "hnm"):
        run = next(r for r in again["runs"] if r["arm"] == arm and r["seed"] == 0)
        assert run["model"] == runs[arm]["model"] and run["metrics"] == runs[arm]["metrics"]
        assert json.loads((Path(run["model"]) / "manifest.json").read_text())["created_utc"] == created[arm]
    assert all(arm["seeds"] == [0, 1] and arm["std"]["ndcg@10"] >= 0 for arm in again["arms"])
    assert "±" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--test-split", "train"], "train_split and test_split are both 'train'"),
    (["--test-split", "dev", "--select-split", "dev"], "select_split 'dev' is trained or scored on"),
    (["--test-split", "dev", "--select-split", "dev", "--select-queries", "0.2"], "pass one of them"),
    # the sample's test split holds the dev queries too
    (["--test-split", "dev", "--select-split", "test"], "holds 14 of the test queries"),
    # the sample's test split holds all 42 queries, so every one of its 28 train queries: nothing is left to train on
    (["--test-split", "test"], "every query of split 'train' is in split 'test' too, so nothing would be left to "
                               "train on that the test does not score. Fix: score on a split of other queries "
                               "(--test-split dev)"),
    (["--cross-fit", "2", "--split-queries", "0.5"], "cross_fit and split_queries both choose the test queries"),
    (["--rounds", "2", "--arms", "zero,pairs"], "Fix: add hnm to --arms"),
    (["--seeds", "0,0"], "repeats a seed"),
    (["--loss", "margin_mse"], "Fix: prove with --loss mnrl or cached_mnrl"),
])
def test_bad_proof_settings_are_refused_before_any_work(flags, message, tmp_path, capsys):
    out = tmp_path / "proof"
    assert main(["prove", str(SAMPLE), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hnm prove: error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_queries_the_test_split_holds_too_are_left_out_of_every_arms_training(tiny_bi_encoder_dir, tmp_path, capsys):
    # BEIR's own splits overlap a little (SciFact: 2 of 300 test queries are train queries too): the proof still
    # scores every test query, and trains on none of the shared ones
    data = tmp_path / "data"
    data.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels_train.tsv", "qrels_dev.tsv"):
        (data / name).write_bytes((SAMPLE / name).read_bytes())
    train = (SAMPLE / "qrels_train.tsv").read_text().splitlines()[1:]
    shared = set(list(dict.fromkeys(line.split("\t")[0] for line in train))[:2])
    rows = [line for line in train if line.split("\t")[0] in shared]
    (data / "qrels_dev.tsv").write_text((SAMPLE / "qrels_dev.tsv").read_text() + "\n".join(rows) + "\n")
    out = tmp_path / "proof"
    flags = ["--model", str(tiny_bi_encoder_dir), "--teacher-model", str(tiny_bi_encoder_dir), "--train-model",
             str(tiny_bi_encoder_dir), "--max-seq-length", "64", "--top-k", "20", "--negatives", "3",
             "--train-batch-size", "4", "--arms", "pairs,naive", "--seeds", "0"]
    assert main(["prove", str(data), "--train-split", "train", "--test-split", "dev", *flags, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    report = json.loads((out / "prove.json").read_text())
    assert report["left_out_of_training"] == sorted(shared)
    train_split = load_collection(data, split="train")
    texts = dict(zip(train_split.query_ids, train_split.query_texts))
    for run in report["runs"]:
        anchors = set(pq.read_table(run["training_file"]).column("anchor").to_pylist())
        assert anchors and not anchors & {texts[qid] for qid in shared}
    assert "Left out of training: 2 queries of train that dev holds too." in capsys.readouterr().out


def test_a_folder_that_is_not_a_proof_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["prove", str(SAMPLE), "--out", str(tmp_path), "--test-split", "dev"]) == 2
    assert "has no .hnm-output.json" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_round_two_remines_with_the_round_one_model_and_trains_on_from_it(tiny_bi_encoder_dir, tmp_path, capsys):
    out = tmp_path / "proof"
    assert _prove(tiny_bi_encoder_dir, out, tmp_path / "cache", "--arms", "hnm", "--rounds", "2") == 0
    report = json.loads((out / "prove.json").read_text())
    first, second = report["runs"]
    assert (first["arm"], second["arm"]) == ("hnm", "hnm-round2")
    started = json.loads((Path(second["model"]) / "manifest.json").read_text())["base_model"]["path"]
    assert Path(started) == Path(first["model"])  # round 2 trains on from the round-1 checkpoint
    mined = json.loads((out / "data" / "hnm-round2-seed0" / "pool.parquet").with_name("manifest.json").read_text())
    assert str(first["model"]) in json.dumps(mined)  # and re-mined with it
    diff = report["rounds"]["0"]
    assert diff["a_selected"] > 0 and 0.0 <= diff["jaccard"] <= 1.0
    assert "Round 2 (seed 0)" in capsys.readouterr().out


def test_stop_ends_the_loop_between_steps_and_keeps_what_finished(tiny_bi_encoder_dir, tmp_path):
    from hnm_core.prove import prove

    values = {"model": str(tiny_bi_encoder_dir), "teacher_model": str(tiny_bi_encoder_dir), "max_seq_length": 64,
              "top_k": 20, "negatives": 3, "train_model": str(tiny_bi_encoder_dir), "max_pairs": 8,
              "train_batch_size": 4, "train_split": "train", "test_split": "dev", "arms": "zero,pairs,hnm"}
    calls = []
    stopped = prove(SAMPLE, tmp_path / "proof", values, cache_dir=tmp_path / "cache",
                    progress=lambda stage, done, total: stage == "prove" and calls.append((stage, done, total)),
                    stop=lambda: len(calls) >= 3)
    assert stopped.stopped and [run.arm for run in stopped.runs] == ["zero", "pairs"]
    assert calls == [("prove", 0, 3), ("prove", 1, 3), ("prove", 2, 3)]
    saved = load_proof(tmp_path / "proof")
    assert saved.stopped and saved.runs == stopped.runs and "Stopped" in saved.table()
    done = prove(SAMPLE, tmp_path / "proof", values, cache_dir=tmp_path / "cache")
    assert not done.stopped and [(run.arm, run.trained_now) for run in done.runs] == [
        ("zero", False), ("pairs", False), ("hnm", True)]


def test_one_labelled_set_split_variants_from_one_pool_paired_intervals_and_a_selection(tiny_bi_encoder_dir,
                                                                                          tmp_path, capsys):
    """--split-queries holds out a seeded share of one split's queries as the test queries; a variant is one more
    arm curated from the hnm arm's pool; every arm gets a paired interval against naive and pairs, a variant against
    hnm too; --select-queries
    picks among hnm and its variants on held-out training queries, never on the test queries."""
    out = tmp_path / "proof"
    assert _prove(tiny_bi_encoder_dir, out, tmp_path / "cache", "--train-split", "test", "--split-queries", "0.3",
                  "--select-queries", "0.25", "--seeds", "0,1", "--variant", "plain=--relative-margin off --skip-n 1",
                  ) == 0
    table = capsys.readouterr().out
    report = json.loads((out / "prove.json").read_text())
    judged = load_collection(SAMPLE, split="test")
    test_ids = set(report["splits"]["split_queries"]["test_queries"])
    assert len(test_ids) == round(0.3 * len(judged.query_ids)) and test_ids <= set(judged.query_ids)
    texts = dict(zip(judged.query_ids, judged.query_texts))
    for run in report["runs"]:
        assert len(run["per_query"]) == len(test_ids)
        if run["training_file"]:
            anchors = set(pq.read_table(run["training_file"]).column("anchor").to_pylist())
            assert anchors and not anchors & {texts[q] for q in test_ids}
    assert [arm["arm"] for arm in report["arms"]] == [*ARMS, "plain"]
    assert report["variants"] == {"plain": {"relative_margin": None, "skip_n": 1}}
    # one mined pool, two curations of it
    pools = [pd.read_parquet(out / "data" / arm / "pool.parquet") for arm in ("hnm", "plain")]
    candidates = ["query_id", "doc_id", "dense_score", "bm25_score", "teacher_score"]
    pd.testing.assert_frame_equal(pools[0][candidates], pools[1][candidates])
    assert not pools[0]["label"].equals(pools[1]["label"])
    # selection: hnm and plain were scored on the held-out training queries, the others were not
    selection = {arm["arm"]: arm["selection"] for arm in report["arms"]}
    assert selection["zero"] is selection["pairs"] is selection["naive"] is None
    assert report["selected"] == max(("hnm", "plain"), key=lambda a: selection[a])
    assert "Selected on" in table and report["selected"] in table.split("Selected on")[1]
    comparisons = {(c["arm"], c["against"]): c for c in report["comparisons"]}
    assert {("hnm", "naive"), ("plain", "naive"), ("zero", "pairs"), ("naive", "pairs")} <= set(comparisons)
    # a variant is also compared with the hnm arm it varies; the reference arms are not
    assert {pair for pair in comparisons if pair[1] == "hnm"} == {("plain", "hnm")}
    for c in comparisons.values():
        assert c["low"] <= c["diff"] <= c["high"] and c["verdict"] in ("win", "level", "loss")
        assert c["queries"] == len(test_ids) and c["seeds"] == [0, 1]
    assert "Paired nDCG@10 differences" in table
    # the hnm arm's margin is measured from the positive margin_ref auto chose, and the table says which and why;
    # plain has no margin, so there is nothing to choose
    manifest = json.loads((out / "data" / "hnm" / "manifest.json").read_text())
    assert report["margin_ref_auto"] == {"hnm": manifest["margin_ref_auto"]}
    chose = {"min": "lowest", "median": "median"}[manifest["margin_ref_auto"]["chose"]]
    assert f"hnm: Auto chose the {chose} positive: " in table and "plain: Auto" not in table
    assert load_proof(out).auto_lines() == [line for line in table.splitlines() if line.startswith("hnm: Auto")]


def test_cross_fit_scores_every_judged_query_once_with_models_that_never_saw_it(tiny_bi_encoder_dir, tmp_path,
                                                                                   capsys):
    """--cross-fit 2: the judged queries dealt into two seeded folds, each scored by the arms trained on the other;
    the table and the intervals pool both folds, per arm and seed."""
    out, cache = tmp_path / "proof", tmp_path / "cache"
    flags = ("--train-split", "test", "--cross-fit", "2", "--seeds", "0", "--arms", "zero,pairs,hnm")
    assert _prove(tiny_bi_encoder_dir, out, cache, *flags) == 0
    table = capsys.readouterr().out
    report = json.loads((out / "prove.json").read_text())
    judged = load_collection(SAMPLE, split="test")
    folds = [set(f) for f in report["splits"]["cross_fit"]["test_queries"]]
    assert len(folds) == 2 and not folds[0] & folds[1] and folds[0] | folds[1] == set(judged.query_ids)
    assert abs(len(folds[0]) - len(folds[1])) <= 1
    assert "trained on the other fold of test, scored on each of 2 folds in turn (42 queries in all)" in table
    texts = dict(zip(judged.query_ids, judged.query_texts))
    runs = {(r["arm"], r["fold"]): r for r in report["runs"]}
    assert set(runs) == {(arm, fold) for arm in ("zero", "pairs", "hnm") for fold in (0, 1)}
    for (arm, fold), run in runs.items():
        assert len(run["per_query"]) == len(folds[fold])
        if run["training_file"]:
            assert Path(run["training_file"]).is_relative_to(out / "data" / f"fold-{fold + 1}")
            anchors = set(pq.read_table(run["training_file"]).column("anchor").to_pylist())
            assert anchors and not anchors & {texts[q] for q in folds[fold]}
    # the table's figure: the mean over all 42 queries, i.e. the folds' means weighted by their queries
    for summary in report["arms"]:
        parts = [runs[summary["arm"], fold] for fold in (0, 1)]
        pooled = sum(p["metrics"]["ndcg@10"] * len(p["per_query"]) for p in parts) / 42
        assert summary["mean"]["ndcg@10"] == pytest.approx(pooled)
        assert summary["rows"] == sum(p["rows"] for p in parts)
    comparisons = {(c["arm"], c["against"]): c for c in report["comparisons"]}
    assert set(comparisons) == {("zero", "pairs"), ("hnm", "pairs")}
    assert all(c["queries"] == 42 for c in comparisons.values())
    assert set(report["margin_ref_auto"]) == {"hnm, fold 1", "hnm, fold 2"}
    assert [s.arm for s in load_proof(out).summaries] == ["zero", "pairs", "hnm"]
    assert load_proof(out).table() + "\n" == (out / "table.txt").read_text()
    # a rerun trains nothing: each fold's arms are cached by their training files
    assert _prove(tiny_bi_encoder_dir, out, cache, *flags) == 0
    again = json.loads((out / "prove.json").read_text())
    assert not any(r["trained_now"] for r in again["runs"])
    assert [a["mean"] for a in again["arms"]] == [a["mean"] for a in report["arms"]]


def test_folds_deal_the_judged_queries_evenly_and_the_same_for_a_seed():
    from hnm_core.prove import fold_queries
    from hnm_core.errors import SettingsError

    judged = load_collection(SAMPLE, split="test")
    three = fold_queries(judged, 3, seed=0)
    assert sorted(map(len, three)) == [14, 14, 14] and frozenset().union(*three) == frozenset(judged.query_ids)
    assert three == fold_queries(judged, 3, seed=0) and three != fold_queries(judged, 3, seed=1)
    with pytest.raises(SettingsError, match="splitting them into 43 needs 43 or more"):
        fold_queries(judged, 43, seed=0)


def _run(arm: str, seed: int, per_query: list[float]):
    from hnm_core.prove import ArmRun

    return ArmRun(arm, seed, 1, {"ndcg@10": sum(per_query) / len(per_query)}, 0.0, False, "", "", "", "",
                  tuple(per_query))


def test_pooled_folds_join_each_arm_and_seeds_queries_and_leave_out_one_a_fold_lacks():
    """A cross-fitted proof stopped in its second fold: naive seed 0 has both folds and pools to the mean over all
    five queries (not the mean of the two folds' means); hnm seed 0 has only the first and is left out."""
    from dataclasses import replace

    from hnm_core.prove import pool_folds

    runs = [replace(_run("naive", 0, [0.2, 0.4, 0.6]), fold=0), replace(_run("hnm", 0, [0.5, 0.5, 0.5]), fold=0),
            replace(_run("naive", 0, [1.0, 0.0]), fold=1)]
    (naive,) = pool_folds(runs, 2)
    assert naive.arm == "naive" and naive.per_query == (0.2, 0.4, 0.6, 1.0, 0.0) and naive.rows == 2
    assert naive.metrics["ndcg@10"] == pytest.approx(2.2 / 5)
    assert pool_folds(runs, None) == tuple(runs)


def test_paired_intervals_call_a_win_only_above_zero():
    from hnm_core.prove import compare

    base = [0.1 * (i % 7) for i in range(40)]
    runs = [_run("zero", 0, base)]
    for seed in (0, 1, 2):
        runs += [_run("naive", seed, base), _run("hnm", seed, [x + 0.05 for x in base]),
                 _run("same", seed, [x + (0.01 if i % 2 else -0.01) for i, x in enumerate(base)])]
    got = {(c.arm, c.against): c for c in compare(runs)}
    assert got[("hnm", "naive")].verdict == "win" and got[("hnm", "naive")].low > 0
    assert abs(got[("hnm", "naive")].diff - 0.05) < 1e-12
    assert got[("same", "naive")].verdict == "level" and got[("same", "naive")].low < 0 < got[("same", "naive")].high
    assert got[("zero", "naive")].seeds == (0, 1, 2) and got[("zero", "naive")].diff == 0.0  # untrained: every seed
    assert ("hnm", "pairs") not in got  # no pairs arm ran


@pytest.mark.parametrize("text, message", [
    ("plain", "is not NAME=FLAGS"),
    ("hnm=--skip-n 2", "none of zero, pairs, naive, hnm"),
    ("fast=--lr 0.1", "'--lr' is not a pool, teacher or curate flag"),
    ("deep=--skip-n", "--skip-n needs a value"),
    ("big=--skip-n 5000", "skip_n: 5000 is above the maximum"),
    ("empty=", "changes nothing"),
])
def test_bad_variants_are_refused_before_any_work(text, message, tmp_path, capsys):
    out = tmp_path / "proof"
    assert main(["prove", str(SAMPLE), "--out", str(out), "--test-split", "dev", "--variant", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hnm prove: error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_variant_flags_read_as_the_mine_command_reads_them():
    from hnm_core.prove import VARIANT_STAGES
    from hnm_core.prove.variants import parse_variant

    assert parse_variant("a=--cluster-rule --near-dup off --margin-ref=mean", VARIANT_STAGES) == (
        "a", {"cluster_rule": True, "near_dup": None, "margin_ref": "mean"})
    assert parse_variant("b=--no-cluster-rule", VARIANT_STAGES) == ("b", {"cluster_rule": False})


def test_a_variant_is_selected_only_on_a_split_of_no_test_query(tmp_path):
    from hnm_core.prove import selection_splits

    data = tmp_path / "data"
    data.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels_train.tsv", "qrels_dev.tsv", "qrels.tsv"):
        (data / name).write_bytes((SAMPLE / name).read_bytes())
    train = (SAMPLE / "qrels_train.tsv").read_text().splitlines()
    first = {line.split("\t")[0] for line in train[1:4]}
    (data / "qrels_sel.tsv").write_text("\n".join([train[0], *(r for r in train[1:] if r.split("\t")[0] in first)]))
    # test holds the dev queries (and every train query): only sel, a few train queries, may select
    assert selection_splits(data, "train", "dev") == ["sel"]
    assert selection_splits(data, "train", "test") == []


def test_the_proof_estimate_counts_trainings_and_evaluations_and_meets_the_measured_runs():
    from hnm_core.prove.estimate import ENCODE_TEXTS_PER_S, TRAIN_TEXTS_PER_S, estimate_proof

    zero = estimate_proof(documents=1000, test_queries=100, train_rows=50, arms=("zero",), seeds=3, epochs=1,
                          negatives=3)
    assert zero.trainings == 0 and zero.evaluations == 1
    assert zero.minutes == pytest.approx(1100 / ENCODE_TEXTS_PER_S / 60)
    pairs = estimate_proof(documents=1000, test_queries=100, train_rows=50, arms=("pairs",), seeds=2, epochs=3,
                           negatives=3)
    assert pairs.trainings == 2 and pairs.evaluations == 2
    assert pairs.minutes == pytest.approx((2 * 50 * 3 * 2 / TRAIN_TEXTS_PER_S + 2 * 1100 / ENCODE_TEXTS_PER_S) / 60)
    # docs/proof.md, one seed of zero + pairs + naive + hnm with 3 negatives on two CPU cores: adi 5.7 min, TIME 10.4
    for documents, test_queries, rows, measured in ((82, 11, 100, 5.7), (423, 35, 194, 10.4)):
        guess = estimate_proof(documents=documents, test_queries=test_queries, train_rows=rows,
                               arms=("zero", "pairs", "naive", "hnm"), seeds=1, epochs=1, negatives=3)
        assert measured / 1.5 < guess.minutes < measured * 1.5
