"""The review queue and what its verdicts measure: a person-confirmed negative in curate, the queue's probability
sample (curate/review.py), the estimate and its interval on synthetic populations where the truth is known
(curate/estimate.py), the filled review file read back as overrides, the estimate over the audit's grid and the
recommendation (audit/verdicts.py), `hnm review` and `hnm estimate` end to end, and the verdicts as a teacher's
training rows."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from hnm_core.audit import sweep
from hnm_core.audit.verdicts import grid_exports, recommend_with_verdicts
from hnm_core.cli import main
from hnm_core.curate.estimate import estimate_share
from hnm_core.curate.overrides import VERDICTS, Override, Overrides, read_overrides
from hnm_core.curate.review import PARTS, false_negative_line, review_queue
from hnm_core.curate.review_file import REVIEW_COLUMNS, draws_matching, read_review_file, write_review_file
from hnm_core.errors import DataError
from hnm_core.teacher.training import NEGATIVE_VERDICTS, POSITIVE_VERDICTS, training_rows, verdicts_by_query
from hnm_core.curate.reasons import reasons
from hnm_core.curate.rules import curate

from .test_cli import SAMPLE, tiny_models  # noqa: F401  (a fixture)
from .test_curate import pool_frame
from .test_export import PARAMS, make_pool, rows
from .test_overrides import verdict, write


@pytest.fixture
def pool():
    return make_pool(pool_frame(rows()))


# ---------------------------------------------------------------------------------------------------------------------
# A person-confirmed negative


def test_a_confirmed_negative_stays_in_the_hard_band_whatever_the_rules_say(pool):
    strict = dataclasses.replace(PARAMS, ceiling=0.55, skip_n=1)
    confirmed = Overrides((Override("q1", "d5", "confirmed_negative", "fine"),
                           Override("q2", "d6", "confirmed_negative")))
    by_rules, kept = curate(pool.frame, strict), curate(pool.frame, strict, confirmed)
    row = {(q, d): i for i, (q, d) in enumerate(zip(pool.frame["query_id"], pool.frame["doc_id"]))}
    assert by_rules.labels[row["q1", "d5"]] == "false_negative"  # 0.6 > 0.55, and rank 1 of BM25
    assert kept.labels[row["q1", "d5"]] == "hard" and kept.selected[row["q1", "d5"]]
    assert kept.labels[row["q2", "d6"]] == "unscored"  # no teacher score: the sampler cannot order it
    assert reasons(pool.frame, kept)[row["q1", "d5"]].startswith("confirmed a negative by you")
    assert "You confirmed 2 negatives: no rule drops a confirmed negative." in kept.summary()
    assert "confirmed" not in " ".join(by_rules.summary())


def test_an_overrides_file_of_the_older_kinds_reads_as_before_and_the_new_kind_is_read(pool, tmp_path):
    old = write(tmp_path / "old.jsonl", verdict("q1", "d5"), verdict("q2", "d8", "bad_negative"))
    assert [o.verdict for o in read_overrides(old, pool.collection).entries] == ["unlabelled_positive",
                                                                                  "bad_negative"]
    new = write(tmp_path / "new.jsonl", verdict("q1", "d5"), verdict("q1", "d5", "confirmed_negative"))
    assert read_overrides(new, pool.collection).get("q1", "d5").verdict == "confirmed_negative"


# ---------------------------------------------------------------------------------------------------------------------
# The queue


def queue_of(pool, **kwargs):
    params = dataclasses.replace(PARAMS, negatives=3)
    others = [np.flatnonzero(curate(pool.frame, dataclasses.replace(params, ceiling=c)).selected) for c in (0.55, 0.35)]
    return review_queue(pool.frame, curate(pool.frame, params), exports=others, **kwargs)


def test_the_queue_is_the_same_for_the_same_inputs_and_another_for_another_seed(pool):
    a, b = queue_of(pool, size=40, seed=3), queue_of(pool, size=40, seed=3)
    assert a.table.to_csv().encode() == b.table.to_csv().encode()
    assert not queue_of(pool, size=40, seed=4).table["row"].equals(a.table["row"])
    assert queue_of(pool, size=15, seed=3).table.equals(a.table.head(15))  # a longer queue starts with the shorter


def test_each_draws_probability_is_its_rows_and_the_draws_follow_them(pool):
    queue = queue_of(pool, size=20_000, seed=1, floor=0.3, grid=0.3)
    assert np.isclose(queue.probability.sum(), 1.0) and (queue.probability > 0).all()
    by_row = dict(zip(queue.population.tolist(), queue.probability))
    assert np.allclose(queue.table["probability"], [by_row[r] for r in queue.table["row"]])
    counts = queue.table["row"].value_counts()
    expected = 20_000 * queue.probability
    observed = np.array([counts.get(r, 0) for r in queue.population])
    assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected) + 1)
    first = queue.table.drop_duplicates("row")
    assert (queue.table.loc[~queue.table.index.isin(first.index), "repeat_of"] > 0).all()
    assert (first["repeat_of"] == 0).all()


def test_a_uniform_floor_of_one_draws_every_row_alike_and_each_draw_says_why(pool):
    flat = queue_of(pool, size=30, floor=1.0, grid=0.0)
    current = np.flatnonzero(curate(pool.frame, dataclasses.replace(PARAMS, negatives=3)).selected)
    assert set(flat.table["row"]) <= set(current)  # grid 0: the current export only
    assert np.allclose(flat.probability[np.isin(flat.population, current)], 1 / len(current))
    assert set(flat.table["part"]) == {"floor"}
    mixed = queue_of(pool, size=200, floor=0.3)
    assert set(mixed.table["part"]) - {"floor"} and set(mixed.table["part"]) <= set(PARTS)
    assert all(why for why in mixed.table["why"])


def test_rows_near_the_false_negative_line_are_drawn_more_often(pool):
    frame = pool.frame
    curation = curate(frame, dataclasses.replace(PARAMS, ceiling=0.55, negatives=3))  # q1 exports d6 (0.5), d7 (0.4)
    queue = review_queue(frame, curation, size=10, floor=0.3)
    assert np.allclose(false_negative_line(frame, curation)[frame["query_id"] == "q1"], 0.55)
    by_doc = {(frame["query_id"].iat[r], frame["doc_id"].iat[r]): p for r, p in zip(queue.population,
                                                                                    queue.probability)}
    assert by_doc["q1", "d6"] > by_doc["q1", "d7"]


def test_the_candidate_scoring_most_like_a_positive_is_drawn_most_and_says_so(pool):
    frame = pool.frame
    queue = review_queue(frame, curate(frame, dataclasses.replace(PARAMS, negatives=3)), size=200, seed=0)
    by_doc = {(frame["query_id"].iat[r], frame["doc_id"].iat[r]): p for r, p in zip(queue.population,
                                                                                    queue.probability)}
    # both are rank 1 by BM25 and top of their query; q2's d5 (0.70) outscores every candidate, q1's d5 (0.60) not
    assert by_doc["q2", "d5"] == max(by_doc.values()) and by_doc["q2", "d5"] > 2 * by_doc["q1", "d5"]
    drawn = queue.table[(queue.table["query_id"] == "q2") & (queue.table["doc_id"] == "d5")]
    assert set(drawn["part"]) - {"floor"} == {"like_positive"}
    assert drawn.loc[drawn["part"] == "like_positive", "why"].iat[0] == (
        "teacher 0.700: percentile 100.0 of all candidates, 100 of its query's")


# ---------------------------------------------------------------------------------------------------------------------
# The estimate, on a synthetic population where the truth is known


def synthetic(share: float, size: int = 2000, seed: int = 0):
    """An exported set of `size` rows (the first half of a population twice as large) with `share` unlabelled
    positives, a skewed priority that partly follows the truth, and the design's probabilities."""
    rng = np.random.default_rng(seed)
    priority = rng.random(2 * size) ** 3
    truth = np.zeros(2 * size, dtype=bool)
    truth[np.argsort(-priority[:size] + rng.normal(0, 0.3, size))[:round(share * size)]] = True
    probability = 0.3 / (2 * size) + 0.7 * priority / priority.sum()
    return np.arange(size), truth, probability


def draws(truth, probability, n, rng, skip=0.0):
    rows = rng.choice(len(probability), size=n, p=probability)
    verdict = np.where(truth[rows], "unlabelled_positive", "confirmed_negative").astype(object)
    verdict[rng.random(n) < skip] = ""
    return pd.DataFrame({"row": rows, "probability": probability[rows], "verdict": verdict})


def test_the_estimate_is_unbiased_and_its_interval_covers_about_95_percent():
    exported, truth, probability = synthetic(0.02)
    population = np.arange(len(probability))
    rng = np.random.default_rng(7)
    found = [estimate_share(draws(truth, probability, 100, rng), exported, population=population,
                            probability=probability) for _ in range(600)]
    share = truth[exported].mean()
    estimates = np.array([e.share for e in found])
    assert abs(estimates.mean() - share) < 4 * estimates.std() / np.sqrt(len(found))
    covered = np.mean([e.low <= share <= e.high for e in found])
    assert 0.93 <= covered
    # a normal interval on the same draws covers far less: what the Korn-Graubard interval is for
    normal = np.mean([abs(e.share - share) <= 1.96 * e.share * np.sqrt(max(1 - e.share, 0) / max(e.effective_n, 1))
                      for e in found])
    assert normal < covered


def test_skipped_draws_are_left_out_not_counted_as_negatives():
    exported, truth, probability = synthetic(0.05)
    rng = np.random.default_rng(1)
    answered = draws(truth, probability, 80, rng)
    skipped = pd.concat([answered, answered.assign(verdict="")], ignore_index=True)
    a, b = estimate_share(answered, exported), estimate_share(skipped, exported)
    assert (a.share, a.answered) == (b.share, b.answered) == (a.share, 80)
    wrong = estimate_share(skipped.assign(verdict=skipped["verdict"].replace("", "confirmed_negative")), exported)
    assert wrong.share == pytest.approx(a.share / 2)


def test_no_verdict_yet_is_unknown_and_none_found_still_has_an_upper_bound():
    exported, truth, probability = synthetic(0.0)
    assert np.isnan(estimate_share(draws(truth, probability, 5, np.random.default_rng(0)).assign(verdict=""),
                                   exported).share)
    none = estimate_share(draws(truth, probability, 50, np.random.default_rng(0)), exported,
                          population=np.arange(len(probability)), probability=probability)
    assert none.share == 0.0 and none.low == 0.0 and 0.05 < none.high < 1.0


def test_an_export_the_queue_could_not_draw_is_refused():
    exported, truth, probability = synthetic(0.02)
    answered = draws(truth, probability, 20, np.random.default_rng(0))
    with pytest.raises(DataError, match="could never be drawn"):
        estimate_share(answered, exported, population=np.arange(100, len(probability)),
                       probability=probability[100:] / probability[100:].sum())


# ---------------------------------------------------------------------------------------------------------------------
# The review file


def filled(path, verdicts: dict[int, str]):
    """The review file at `path` with `verdicts` (draw -> word) written in its verdict column, as a person would."""
    with path.open(encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    for record in records:
        record["verdict"] = verdicts.get(int(record["draw"]), "")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def test_a_filled_review_file_round_trips_into_overrides_and_the_estimate(pool, tmp_path):
    queue = queue_of(pool, size=12, seed=2)
    path = write_review_file(tmp_path / "review.csv", queue, pool.frame, pool.collection)
    written = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(written.columns) == list(REVIEW_COLUMNS) and (written["verdict"] == "").all()
    first, second = queue.table.iloc[0], queue.table.iloc[1]
    assert written["document"].iat[0] == pool.collection.doc_texts[pool.collection.doc_index[first["doc_id"]]]
    filled(path, {1: "positive", 2: "Confirmed Negative", 3: "bad"})
    overrides = read_overrides(path, pool.collection)
    assert overrides.get(first["query_id"], first["doc_id"]).verdict == "unlabelled_positive"
    assert overrides.get(second["query_id"], second["doc_id"]).verdict in ("confirmed_negative", "unlabelled_positive")
    table = draws_matching(read_review_file(path, pool.collection), queue, path)
    assert table["row"].tolist() == queue.table["row"].tolist()
    assert (table["verdict"] != "").sum() >= 3  # a repeat of an answered draw takes its verdict
    curation = curate(pool.frame, PARAMS, overrides)
    row = queue.table["row"].iat[0]
    assert curation.labels[row] == "unlabelled_positive" and not curation.selected[row]


def test_an_earlier_verdict_is_shown_and_answers_its_draw_only_up_to_the_last_draw_answered(pool, tmp_path):
    queue = queue_of(pool, size=12, seed=2)
    table = queue.table.drop_duplicates("row")
    early, late = table.iloc[1], table.iloc[-1]  # two distinct candidates, the second first drawn two draws later
    earlier = Overrides((Override(early["query_id"], early["doc_id"], "unlabelled_positive"),
                         Override(late["query_id"], late["doc_id"], "unlabelled_positive")))
    path = write_review_file(tmp_path / "review.csv", queue, pool.frame, pool.collection, earlier)
    written = pd.read_csv(path, dtype=str, keep_default_na=False)
    marked = (written["query_id"] == early["query_id"]) & (written["doc_id"] == early["doc_id"])
    assert (written.loc[marked, "earlier"] == "unlabelled_positive").all()
    assert (written.loc[~marked & (written["doc_id"] != late["doc_id"]), "earlier"] == "").all()
    reached = int(early["draw"]) + 1
    assert int(late["draw"]) > reached
    filled(path, {d: "negative" for d, r in zip(queue.table["draw"], queue.table["row"])
                  if d <= reached and r != early["row"]})
    read = read_review_file(path, pool.collection).set_index("draw")
    assert read.at[int(early["draw"]), "verdict"] == "unlabelled_positive"  # before the last draw answered
    assert read.at[int(late["draw"]), "verdict"] == ""  # beyond it: not counted, whatever it says


def test_a_bad_verdict_or_a_file_of_another_queue_is_named_with_its_line(pool, tmp_path):
    queue = queue_of(pool, size=6, seed=2)
    path = filled(write_review_file(tmp_path / "review.csv", queue, pool.frame, pool.collection), {2: "great"})
    with pytest.raises(DataError, match=r"review.csv:3: draw 2: unknown verdict 'great'. Fix: write one of"):
        read_overrides(path, pool.collection)
    path = filled(path, {2: "positive"})
    with pytest.raises(DataError, match="is not the queue's"):
        draws_matching(read_review_file(path), queue_of(pool, size=6, seed=9), path)


# ---------------------------------------------------------------------------------------------------------------------
# Over the audit's grid, and the recommendation


def test_the_recommendation_keeps_both_the_leak_and_the_estimate_under_the_target(pool):
    frame = pool.frame
    hidden = np.zeros(len(frame), dtype=bool)
    base = dataclasses.replace(PARAMS, negatives=3)
    result = sweep(frame, hidden, base, n_hidden=1, grid={"ceiling": (None, 0.55, 0.35)}, min_coverage=0.0)
    assert len(grid_exports(frame, base, {"ceiling": (None, 0.55, 0.35)})) == len(result.table)
    hardest = int(result.table["mean_teacher"].idxmax())
    estimates = pd.DataFrame({"share": [0.0] * len(result.table), "low": 0.0, "high": 0.1})
    assert recommend_with_verdicts(result, estimates).settings == result.recommendation.settings
    estimates.loc[hardest, "share"] = 0.5  # the verdicts say the hardest setting exports unlabelled positives
    picked = recommend_with_verdicts(result, estimates)
    assert picked.met_target and result.row(picked.params) != hardest
    assert "estimated unlabelled positives 0.0%" in picked.reason


def test_the_sweep_with_verdicts_applied_leaks_only_what_no_verdict_caught(pool):
    frame = pool.frame
    hidden = ((frame["query_id"] == "q1") & frame["doc_id"].isin(["d5", "d6"])).to_numpy()
    base = dataclasses.replace(PARAMS, negatives=3)
    grid = {"ceiling": (None, 0.55)}
    rules = sweep(frame, hidden, base, n_hidden=2, grid=grid, min_coverage=0.0)
    found = Overrides((Override("q1", "d5", "unlabelled_positive"), Override("q1", "d7", "confirmed_negative")))
    applied = sweep(frame, hidden, base, n_hidden=2, grid=grid, min_coverage=0.0, overrides=found)
    assert rules.figures[rules.current].n_leaked == 2  # d5 and d6 exported at no ceiling
    assert applied.figures[applied.current].n_leaked == 1  # d5 is marked: only d6 leaks


# ---------------------------------------------------------------------------------------------------------------------
# Verdicts as a teacher's labels


def test_verdicts_change_the_training_rows_of_their_query_only(pool):
    frame = pool.frame
    plain, counts = training_rows(frame, pool.collection, ("q1", "q2"), band=0, negatives_per_positive=1, seed=0)
    verdicts = verdicts_by_query([Override("q1", "d6", "unlabelled_positive"), Override("q1", "d7", "bad_negative"),
                                  Override("q2", "d8", "confirmed_negative"), Override("q4", "d1", "bad_negative")])
    taught, counted_ = training_rows(frame, pool.collection, ("q1", "q2"), band=0, negatives_per_positive=1, seed=0,
                                     verdicts=verdicts)
    text = dict(zip(pool.collection.doc_ids, pool.collection.doc_texts))
    q1, q2 = pool.collection.query_texts[0], pool.collection.query_texts[1]
    assert (q1, text["d6"], 1.0) in taught and (q1, text["d6"], 1.0) not in plain
    assert (q1, text["d7"], 0.0) in taught and (q2, text["d8"], 0.0) in taught
    assert {q for q, _, _ in taught} == {q1, q2}  # q4 is not among these queries: its verdict stays out
    assert (counted_["verdict_positives"], counted_["verdict_negatives"]) == (1, 2)
    assert counted_["positives"] == counts["positives"] + 1


def test_every_verdict_kind_teaches_something():
    assert set(POSITIVE_VERDICTS) | set(NEGATIVE_VERDICTS) == set(VERDICTS)
    assert not set(POSITIVE_VERDICTS) & set(NEGATIVE_VERDICTS)


# ---------------------------------------------------------------------------------------------------------------------
# hnm review and hnm estimate, end to end on the sample


def test_hnm_review_writes_a_queue_that_estimate_and_curate_read_back(tiny_models, tmp_path, capsys):  # noqa: F811
    mined = tmp_path / "mined"
    assert main(["mine", str(SAMPLE), "--out", str(mined), "--formats", "triplet,pool", *tiny_models]) == 0
    path = tmp_path / "review.csv"
    assert main(["review", str(mined), "--out", str(path), "--n", "40", "--review-seed", "3", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "40 draws" in said and f"Review file written to {path}" in said
    assert main(["review", str(mined), "--out", str(path), "--quiet"]) == 2  # a filled file is never overwritten
    truth = pd.read_csv(SAMPLE / "unlabelled_positives.tsv", sep="\t", dtype=str)
    known = set(zip(truth["query-id"], truth["corpus-id"]))
    queue = pd.read_csv(path, dtype=str, keep_default_na=False)
    oracle = {int(d): "positive" if (q, doc) in known else "negative"
              for d, q, doc in zip(queue["draw"], queue["query_id"], queue["doc_id"]) if int(d) <= 30}
    filled(path, oracle)
    assert main(["estimate", str(mined), str(path), "--review-seed", "3", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["current"]["answered"] == 30 and report["grid"]["settings"] == 1500
    assert report["current"]["low"] <= report["current"]["share"] <= report["current"]["high"]
    assert report["current"]["found"] == sum(1 for d, v in oracle.items() if v == "positive"
                                             and queue["exported"].iat[d - 1] == "True")
    assert main(["estimate", str(mined), str(path), "--quiet"]) == 2  # drawn with seed 3: another queue refuses it
    assert "is not the queue's" in capsys.readouterr().err
    out = tmp_path / "curated"
    assert main(["curate", str(mined), "--overrides", str(path), "--out", str(out), "--quiet"]) == 0
    labelled = pd.read_parquet(out / "pool.parquet").set_index(["query_id", "doc_id"])
    for draw, verdict in oracle.items():
        pair = (queue["query_id"].iat[draw - 1], queue["doc_id"].iat[draw - 1])
        assert (labelled.loc[pair, "label"] == "unlabelled_positive") == (verdict == "positive")
