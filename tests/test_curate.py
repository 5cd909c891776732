"""curate: every rule on hand-made pools, precedence, margins, sampling, counts; the vectorised labels and `top`
sampling against a row-by-row reference."""

from __future__ import annotations

import dataclasses
import math
import statistics
import re

import numpy as np
import pandas as pd
import pytest

from hnm_core.curate.margins import margin_thresholds, positive_like_share
from hnm_core.curate.rules import LABELS, CurateParams, ShortQuery, combine, curate
from hnm_core.curate.reasons import reasons
from hnm_core.errors import DataError, SettingsError
from hnm_core.schema import POOL_COLUMNS
from hnm_core.settings import validate

NAN = float("nan")
_ROW_DEFAULTS = dict(is_positive=False, in_bm25=False, bm25_rank=0, bm25_score=NAN, in_dense=False, dense_rank=0,
                     dense_score=NAN, fused_rank=0, pos_sim_max=NAN, cluster=-1, teacher_score=NAN)

# Every rule off: a test turns on only the rule it is about.
OFF = dict(ceiling=None, relative_margin=None, absolute_margin=None, near_dup=None, skip_n=0, cluster_rule=False,
           floor=None)


def pool_frame(rows: list[dict]) -> pd.DataFrame:
    """A pool table in the documented schema from partial rows (missing columns take neutral values)."""
    full = []
    for i, row in enumerate(rows):
        r = {**_ROW_DEFAULTS, "query_id": "q1", "doc_id": f"d{i}", **row}
        r["teacher_raw"] = r["teacher_score"]
        full.append(r)
    return pd.DataFrame(full)[list(POOL_COLUMNS)].astype(POOL_COLUMNS)


def one_candidate(candidate: dict, positive: dict | None = None) -> pd.DataFrame:
    """Query q1: one positive (score 0.8, cluster 5) then the candidate under test."""
    pos = {"doc_id": "p1", "is_positive": True, "teacher_score": 0.8, "cluster": 5, **(positive or {})}
    return pool_frame([pos, {"doc_id": "c1", "fused_rank": 1, "teacher_score": 0.5, **candidate}])


def labels_of(frame: pd.DataFrame, **params) -> list[str]:
    return list(curate(frame, CurateParams(**{**OFF, **params})).labels)


@pytest.mark.parametrize("params, candidate, expected", [
    (dict(ceiling=0.7), {"teacher_score": 0.75}, "false_negative"),
    (dict(ceiling=0.7), {"teacher_score": 0.7}, "hard"),  # "above" is strict
    (dict(relative_margin=0.1), {"teacher_score": 0.73}, "false_negative"),  # above 0.8 - 0.08
    (dict(relative_margin=0.1), {"teacher_score": 0.71}, "hard"),
    (dict(relative_margin=0.0), {"teacher_score": 0.81}, "false_negative"),  # scores above the positive itself
    (dict(absolute_margin=0.05), {"teacher_score": 0.76}, "false_negative"),
    (dict(absolute_margin=0.05), {"teacher_score": 0.74}, "hard"),
    (dict(near_dup=0.9), {"pos_sim_max": 0.95}, "near_duplicate"),
    (dict(near_dup=0.9), {"pos_sim_max": 0.9}, "hard"),
    (dict(near_dup=0.9), {"pos_sim_max": NAN}, "hard"),  # no other positive / no embeddings
    (dict(cluster_rule=True), {"cluster": 5}, "same_cluster"),
    (dict(cluster_rule=True), {"cluster": 6}, "hard"),
    (dict(cluster_rule=False), {"cluster": 5}, "hard"),
    (dict(skip_n=3), {"bm25_rank": 3}, "skipped"),
    (dict(skip_n=3), {"dense_rank": 1}, "skipped"),
    (dict(skip_n=3), {"bm25_rank": 4, "dense_rank": 0}, "hard"),
    (dict(skip_n=3), {"bm25_rank": 0, "dense_rank": 0}, "hard"),  # 0 = outside the top-K, not rank 0
    (dict(skip_n=0), {"bm25_rank": 1}, "hard"),
    (dict(), {"teacher_score": NAN}, "unscored"),
    (dict(floor=0.2), {"teacher_score": 0.1}, "easy"),
    (dict(floor=0.2), {"teacher_score": 0.2}, "hard"),
    (dict(floor=0.2, ceiling=0.9, cluster_rule=True), {"is_positive": True, "cluster": 5, "teacher_score": 0.95},
     "positive"),
])
def test_each_rule_labels_the_candidate(params, candidate, expected):
    assert labels_of(one_candidate(candidate), **params) == ["positive", expected]


def test_cluster_minus_one_never_matches():
    frame = one_candidate({"cluster": -1}, positive={"cluster": -1})
    assert labels_of(frame, cluster_rule=True) == ["positive", "hard"]


def test_cluster_rule_compares_with_the_candidates_own_query_only():
    frame = pool_frame([
        {"query_id": "q1", "is_positive": True, "cluster": 5, "teacher_score": 0.8},
        {"query_id": "q1", "cluster": 7, "teacher_score": 0.5},
        {"query_id": "q2", "is_positive": True, "cluster": 7, "teacher_score": 0.8},
        {"query_id": "q2", "cluster": 5, "teacher_score": 0.5},
        {"query_id": "q2", "cluster": 7, "teacher_score": 0.5},
    ])
    assert labels_of(frame, cluster_rule=True) == ["positive", "hard", "positive", "hard", "same_cluster"]


# One candidate that every rule matches; turning rules off one by one walks down the precedence order.
EVERYTHING = {"teacher_score": 0.1, "pos_sim_max": 0.99, "cluster": 5, "bm25_rank": 1}
ALL_ON = dict(ceiling=0.05, near_dup=0.9, cluster_rule=True, skip_n=1, floor=0.5)


@pytest.mark.parametrize("turned_off, expected", [
    ({}, "false_negative"),
    (dict(ceiling=None), "near_duplicate"),
    (dict(ceiling=None, near_dup=None), "same_cluster"),
    (dict(ceiling=None, near_dup=None, cluster_rule=False), "skipped"),
    (dict(ceiling=None, near_dup=None, cluster_rule=False, skip_n=0), "easy"),
    (dict(ceiling=None, near_dup=None, cluster_rule=False, skip_n=0, floor=None), "hard"),
])
def test_first_matching_rule_wins(turned_off, expected):
    settings = {**ALL_ON, **turned_off}
    result = curate(one_candidate(EVERYTHING), CurateParams(**{**OFF, **settings}))
    assert list(result.labels) == ["positive", expected]
    rules_on = {label for label, name in _RULE_OF.items() if settings[name] not in (None, False, 0)}
    for rc in result.counts:
        assert rc.count == (1 if rc.label in ("positive", expected) else 0)
        if rc.label in rules_on:
            assert rc.matched == 1, rc  # counted even when an earlier rule took the row


_RULE_OF = {"false_negative": "ceiling", "near_duplicate": "near_dup", "same_cluster": "cluster_rule",
            "skipped": "skip_n", "easy": "floor"}


def test_relative_margin_is_correct_for_negative_scores():
    # Logits: the positive scores -2.0; a 10% margin reaches down to -2.2. Without abs() the threshold would be
    # -2.0 * 0.9 = -1.8, above the positive, and would flag nothing below it.
    frame = pool_frame([
        {"is_positive": True, "teacher_score": -2.0},
        {"teacher_score": -2.1, "fused_rank": 1},
        {"teacher_score": -2.3, "fused_rank": 2},
        {"teacher_score": -1.9, "fused_rank": 3},
    ])
    assert labels_of(frame, relative_margin=0.1) == ["positive", "false_negative", "hard", "false_negative"]


@pytest.mark.parametrize("margin_ref, expected", [
    ("min", ["false_negative", "false_negative", "false_negative"]),  # above the lowest positive, 0.5
    ("median", ["false_negative", "false_negative", "hard"]),  # the median positive is 0.6
    ("mean", ["false_negative", "hard", "hard"]),  # the mean positive is 0.6667
    ("max", ["hard", "hard", "hard"]),  # the highest positive is 0.9
])
def test_margin_ref_picks_the_positive_the_margin_is_measured_from(margin_ref, expected):
    frame = pool_frame([
        {"is_positive": True, "teacher_score": 0.9},
        {"is_positive": True, "teacher_score": 0.5},
        {"is_positive": True, "teacher_score": 0.6},
        {"teacher_score": 0.7, "fused_rank": 1},
        {"teacher_score": 0.62, "fused_rank": 2},
        {"teacher_score": 0.55, "fused_rank": 3},
    ])
    assert labels_of(frame, relative_margin=0.0, margin_ref=margin_ref)[3:] == expected


def test_unscored_positives_turn_the_margin_rules_off_for_their_query():
    frame = pool_frame([
        {"query_id": "q1", "is_positive": True},
        {"query_id": "q1", "teacher_score": 0.99, "fused_rank": 1},
        {"query_id": "q2", "is_positive": True, "teacher_score": 0.5},
        {"query_id": "q2", "teacher_score": 0.99, "fused_rank": 1},
    ])
    assert labels_of(frame, relative_margin=0.05, absolute_margin=0.1) == ["positive", "hard", "positive",
                                                                            "false_negative"]
    # The absolute ceiling needs no positive score.
    assert labels_of(frame, ceiling=0.9)[1] == "false_negative"


def test_unscored_candidates_are_never_guessed_easy_or_hard():
    frame = pool_frame([{"is_positive": True, "teacher_score": 0.8}, {"fused_rank": 1}])
    result = curate(frame, CurateParams(**{**OFF, "floor": 0.5, "ceiling": 0.7}))
    assert list(result.labels) == ["positive", "unscored"]
    assert not result.selected.any()


def hard_band(n_queries: int, n_candidates: int, seed: int = 0, positive_score: float = 0.8) -> pd.DataFrame:
    """Queries with one positive and `n_candidates` scored candidates, all in the hard band when rules are OFF."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        rows.append({"query_id": f"q{q}", "doc_id": f"q{q}-pos", "is_positive": True, "teacher_score": positive_score})
        scores = rng.uniform(0.0, 0.7, n_candidates)
        rows += [{"query_id": f"q{q}", "doc_id": f"q{q}-d{i}", "fused_rank": i + 1, "teacher_score": s}
                 for i, s in enumerate(scores)]
    return pool_frame(rows)


def test_top_takes_the_highest_scores_ties_by_fused_rank():
    frame = pool_frame([
        {"is_positive": True, "teacher_score": 0.9},
        {"doc_id": "a", "teacher_score": 0.5, "fused_rank": 4},
        {"doc_id": "b", "teacher_score": 0.7, "fused_rank": 3},
        {"doc_id": "c", "teacher_score": 0.5, "fused_rank": 2},
        {"doc_id": "d", "teacher_score": 0.2, "fused_rank": 1},
    ])
    result = curate(frame, CurateParams(**OFF, negatives=3, sampling="top"))
    assert result.selected.tolist() == [False, True, True, True, False]
    assert result.neg_rank.tolist() == [0, 3, 1, 2, 0]


def test_selection_respects_quota_per_query_and_only_takes_hard_rows():
    frame = hard_band(5, 8)
    frame.loc[frame.index[3], "teacher_score"] = 0.05
    for sampling in ("top", "random", "simans"):
        result = curate(frame, CurateParams(**{**OFF, "floor": 0.1}, negatives=4, sampling=sampling))
        labels = np.asarray(result.labels)
        assert (labels[result.selected] == "hard").all()
        per_query = frame.loc[result.selected, "query_id"].value_counts()
        assert (per_query == 4).all() and len(per_query) == 5
        for _, group in frame.assign(r=result.neg_rank).loc[result.selected].groupby("query_id"):
            assert sorted(group["r"]) == [1, 2, 3, 4]
            # neg_rank orders by teacher score whatever the strategy
            assert group.sort_values("r")["teacher_score"].is_monotonic_decreasing


def selected_pairs(frame: pd.DataFrame, params: CurateParams) -> set[tuple[str, str]]:
    result = curate(frame, params)
    chosen = frame.loc[result.selected, ["query_id", "doc_id"]]
    return set(chosen.itertuples(index=False, name=None))


@pytest.mark.parametrize("sampling", ["random", "simans"])
def test_seeded_sampling_is_reproducible_order_independent_and_seed_dependent(sampling):
    frame = hard_band(20, 30)
    params = CurateParams(**OFF, negatives=5, sampling=sampling, seed=7)
    first = selected_pairs(frame, params)
    assert len(first) == 100
    assert selected_pairs(frame, params) == first
    shuffled = frame.sample(frac=1.0, random_state=np.random.RandomState(1)).reset_index(drop=True)
    assert selected_pairs(shuffled, params) == first
    assert selected_pairs(frame, CurateParams(**OFF, negatives=5, sampling=sampling, seed=8)) != first
    assert selected_pairs(frame, CurateParams(**OFF, negatives=5, sampling="top")) != first


def test_random_draws_do_not_move_when_other_rows_leave_the_band():
    frame = hard_band(10, 30)
    params = CurateParams(**OFF, negatives=5, sampling="random", seed=3)
    before = selected_pairs(frame, params)
    # Make one unselected row per query easy: the draws among the rest must not change.
    result = curate(frame, params)
    unselected = frame.index[~result.selected & ~frame["is_positive"].to_numpy()]
    easier = frame.copy()
    easier.loc[unselected[::7], "teacher_score"] = 0.0
    assert selected_pairs(easier, CurateParams(**{**OFF, "floor": 0.01}, negatives=5, sampling="random",
                                               seed=3)) == before


def test_simans_favours_scores_near_the_peak():
    frame = hard_band(200, 40)  # candidate scores uniform in [0, 0.7], positive 0.8
    peak = 0.5
    simans = curate(frame, CurateParams(**OFF, negatives=5, sampling="simans", simans_a=200.0,
                                        simans_b=peak - 0.8))
    random = curate(frame, CurateParams(**OFF, negatives=5, sampling="random"))
    scores = frame["teacher_score"].to_numpy()
    simans_gap = np.abs(scores[simans.selected] - peak).mean()
    random_gap = np.abs(scores[random.selected] - peak).mean()
    assert simans_gap < 0.06 < 0.15 < random_gap  # uniform draws average ~0.2 away; the peak's width is ~0.05


def test_short_queries_are_reported_and_keep_what_they_have():
    frame = pool_frame([
        {"query_id": "q1", "is_positive": True, "teacher_score": 0.9},
        *[{"query_id": "q1", "doc_id": f"a{i}", "teacher_score": 0.5, "fused_rank": i + 1} for i in range(4)],
        {"query_id": "q2", "is_positive": True, "teacher_score": 0.9},
        *[{"query_id": "q2", "doc_id": f"b{i}", "teacher_score": 0.5, "fused_rank": i + 1} for i in range(2)],
        {"query_id": "q3", "is_positive": True, "teacher_score": 0.9},
        {"query_id": "q3", "doc_id": "c0", "fused_rank": 1},  # unscored: q3 has no hard negative at all
    ])
    result = curate(frame, CurateParams(**OFF, negatives=3))
    assert result.short_queries == (ShortQuery("q2", 2, 3), ShortQuery("q3", 0, 3))
    assert (result.n_queries, result.n_full_quota) == (3, 1)
    assert frame.loc[result.selected, "query_id"].value_counts().to_dict() == {"q1": 3, "q2": 2}
    assert result.summary()[-1] == "1 of 3 queries got the full 3 negatives; 2 got fewer and keep what they have " \
                                   "(see short_queries)."


def test_counts_add_up_and_read_as_sentences():
    frame = pool_frame([
        {"is_positive": True, "teacher_score": 0.9, "cluster": 1},
        *[{"doc_id": f"s{i}", "teacher_score": 0.5, "bm25_rank": i + 1, "fused_rank": i + 1} for i in range(3)],
        {"doc_id": "fn", "teacher_score": 0.95, "bm25_rank": 4, "fused_rank": 4},
        {"doc_id": "e", "teacher_score": 0.01, "fused_rank": 5},
        {"doc_id": "u", "fused_rank": 6},
        *[{"doc_id": f"h{i}", "teacher_score": 0.4, "fused_rank": 7 + i} for i in range(4)],
    ])
    result = curate(frame, CurateParams(**{**OFF, "relative_margin": 0.05, "skip_n": 4, "floor": 0.1}, negatives=2))
    assert [rc.label for rc in result.counts] == list(LABELS)
    assert sum(rc.count for rc in result.counts) == len(frame)
    by_label = {rc.label: rc for rc in result.counts}
    assert {k: v.count for k, v in by_label.items() if v.count} == {
        "positive": 1, "false_negative": 1, "skipped": 3, "unscored": 1, "easy": 1, "hard": 4}
    assert by_label["skipped"].matched == 4  # the false negative ranked 4th as well
    assert by_label["skipped"].sentence == ("Skipped 3 candidates ranked in a source's top 4; the rule matched 1 "
                                            "more that an earlier rule had labelled.")
    assert by_label["hard"].sentence == ("4 candidates in the hard band; 2 sampled as negatives "
                                         "(top, up to 2 per query).")
    # 1 of the 9 scored candidates lies above the best positive less 5%: auto takes the median (the only positive)
    assert by_label["false_negative"].sentence == (
        "Flagged 1 candidate as likely false negatives (teacher score above the query's median positive score less "
        "5%). Auto chose the median positive: 11.1% of candidates score above their query's best positive less 5%, "
        "and it takes the lowest only from 15%. No collection measured so far lies between 10% and 21%: prove the "
        "lowest and the median positive both on this data (hnm prove or the Train page, a variant for each).")
    assert by_label["near_duplicate"].sentence == "Near-duplicate rule is off."
    assert result.count("easy") == 1 and result.n_selected == 2
    assert list(result.labels.categories) == list(LABELS)


def reference_share(frame: pd.DataFrame) -> float:
    """Query by query, the share margin_ref "auto" chooses by (hnm_core.curate.margins)."""
    shares = []
    for _, group in frame.groupby("query_id", sort=False):
        scores = group["teacher_score"].astype("float32")
        best = scores[group["is_positive"]].max()
        candidates = scores[~group["is_positive"]].dropna()
        if not math.isnan(best) and len(candidates):
            shares.append(float((candidates > np.float32(best - abs(best) * 0.05)).mean()))
    return sum(shares) / len(shares) if shares else NAN


def reference_labels(frame: pd.DataFrame, p: CurateParams) -> list[str]:
    """Row by row, straight from the rule list in the module docstring."""
    how = p.margin_ref if p.margin_ref != "auto" else ("min" if reference_share(frame) >= 0.15 else "median")
    out = []
    for _, row in frame.iterrows():
        group = frame[(frame["query_id"] == row["query_id"]) & frame["is_positive"]]
        pos_scores = [float(s) for s in group["teacher_score"] if not math.isnan(s)]
        ref = None
        if pos_scores:
            ref = {"min": min, "max": max, "median": statistics.median,
                   "mean": lambda xs: sum(xs) / len(xs)}[how](pos_scores)
        s = row["teacher_score"]
        above = lambda t: not math.isnan(s) and s > np.float32(t)  # noqa: E731
        if row["is_positive"]:
            out.append("positive")
        elif (p.ceiling is not None and above(p.ceiling)) or (ref is not None and (
                (p.relative_margin is not None and above(ref - abs(ref) * p.relative_margin))
                or (p.absolute_margin is not None and above(ref - p.absolute_margin)))):
            out.append("false_negative")
        elif p.near_dup is not None and row["pos_sim_max"] > np.float32(p.near_dup):
            out.append("near_duplicate")
        elif p.cluster_rule and row["cluster"] != -1 and row["cluster"] in set(group["cluster"]):
            out.append("same_cluster")
        elif p.skip_n and (0 < row["bm25_rank"] <= p.skip_n or 0 < row["dense_rank"] <= p.skip_n):
            out.append("skipped")
        elif math.isnan(s):
            out.append("unscored")
        elif p.floor is not None and s < np.float32(p.floor):
            out.append("easy")
        else:
            out.append("hard")
    return out


def random_pool() -> pd.DataFrame:
    """12 queries with 1-3 positives (some unscored) and 15 candidates each, every rule's column random."""
    rng = np.random.default_rng(42)
    rows = []
    for q in range(12):
        for i in range(int(rng.integers(1, 4))):
            rows.append({"query_id": f"q{q}", "doc_id": f"p{q}-{i}", "is_positive": True,
                         "teacher_score": NAN if rng.random() < 0.2 else rng.uniform(0.4, 1.0),
                         "cluster": int(rng.integers(-1, 4))})
        for i in range(15):
            rows.append({"query_id": f"q{q}", "doc_id": f"d{q}-{i}", "fused_rank": i + 1,
                         "bm25_rank": int(rng.integers(0, 6)), "dense_rank": int(rng.integers(0, 6)),
                         "pos_sim_max": NAN if rng.random() < 0.3 else rng.uniform(0.3, 1.0),
                         "cluster": int(rng.integers(-1, 8)),
                         "teacher_score": NAN if rng.random() < 0.1 else round(rng.uniform(0.0, 1.0), 2)})
    return pool_frame(rows)


# Settings that exercise every rule against the random pools: the defaults, everything on, margins by value.
RULE_MIXES = [
    CurateParams(),
    CurateParams(ceiling=0.6, relative_margin=0.2, margin_ref="mean", skip_n=2, cluster_rule=True, near_dup=0.7,
                 floor=0.2, negatives=3),
    CurateParams(relative_margin=None, absolute_margin=0.15, cluster_rule=True, floor=0.3, negatives=5),
]


@pytest.mark.parametrize("params", RULE_MIXES)
def test_labels_and_top_sampling_match_a_row_by_row_reference(params):
    frame = random_pool()
    result = curate(frame, params)
    assert list(result.labels) == reference_labels(frame, params)
    hard = frame.assign(label=reference_labels(frame, params)).query("label == 'hard'")
    expected = set()
    for _, group in hard.groupby("query_id"):
        top = group.sort_values(["teacher_score", "fused_rank"], ascending=[False, True]).head(params.negatives)
        expected |= set(top["doc_id"])
    assert set(frame.loc[result.selected, "doc_id"]) == expected


def test_params_validate_with_the_accepted_range():
    with pytest.raises(SettingsError, match="relative_margin: 1.5 is above the maximum 1.0"):
        CurateParams(relative_margin=1.5)
    with pytest.raises(SettingsError, match="negatives: 0 is below the minimum 1"):
        CurateParams(negatives=0)
    with pytest.raises(SettingsError, match="sampling: 'best' is not one of top, random, simans"):
        CurateParams(sampling="best")
    with pytest.raises(SettingsError, match="simans_a"):
        CurateParams(simans_a=0.0)
    with pytest.raises(SettingsError, match="simans_b"):
        CurateParams(simans_b=float("inf"))


def test_from_settings_reads_the_curate_stage_and_the_seed():
    values = validate({"negatives": "4", "sampling": "random", "seed": 9, "top_k": 50, "file_type": "jsonl"})
    params = CurateParams.from_settings(values, simans_a=3.0)
    assert (params.negatives, params.sampling, params.seed, params.simans_a) == (4, "random", 9, 3.0)
    assert CurateParams.from_settings(validate({})) == CurateParams()


def test_missing_columns_are_named():
    frame = pool_frame([{"is_positive": True}]).drop(columns=["cluster", "pos_sim_max"])
    with pytest.raises(DataError, match="missing columns pos_sim_max, cluster"):
        curate(frame, CurateParams())


@pytest.mark.parametrize("margins", [dict(relative_margin=0.1), dict(absolute_margin=0.05),
                                     dict(relative_margin=0.2, absolute_margin=0.05, margin_ref="mean"), {}])
def test_margin_thresholds_are_the_line_curate_flags_above(margins):
    rng = np.random.default_rng(3)
    rows = [{"query_id": q, "doc_id": f"{q}p{i}", "is_positive": True, "teacher_score": float(s)}
            for q in ("q1", "q2") for i, s in enumerate(rng.uniform(0.5, 0.9, 2))]
    rows += [{"query_id": q, "doc_id": f"{q}c{i}", "fused_rank": i + 1, "teacher_score": float(s)}
             for q in ("q1", "q2", "q3") for i, s in enumerate(rng.uniform(0.3, 1.0, 40))]
    frame = pool_frame(rows).sort_values("query_id", kind="stable").reset_index(drop=True)
    params = CurateParams(**{**OFF, **margins})
    line = margin_thresholds(frame, params)
    assert list(line.index) == ["q1", "q2", "q3"]
    assert math.isnan(line["q3"])  # no positive: no margin line
    above = frame["teacher_score"].to_numpy(np.float32) > line[frame["query_id"]].to_numpy().astype(np.float32)
    flagged = np.asarray(curate(frame, params).labels) == "false_negative"
    assert (flagged == (above & ~frame["is_positive"].to_numpy())).all()
    assert flagged.any() == bool(margins)


def reason_of(candidate: dict, positive: dict | None = None, **params) -> str:
    """The reason given for the candidate of `one_candidate`, with every rule off but `params`."""
    frame = one_candidate(candidate, positive)
    explained = reasons(frame, curate(frame, CurateParams(**{**OFF, **params})))
    assert explained[0] == "labelled positive"
    return explained[1]


@pytest.mark.parametrize("params, candidate, expected", [
    (dict(ceiling=0.7), {"teacher_score": 0.75}, "teacher 0.75 > ceiling 0.70"),
    (dict(ceiling=0.66), {"teacher_score": 0.6601}, "teacher 0.6601 > ceiling 0.66"),  # never "0.66 > 0.66"
    (dict(relative_margin=0.1), {"teacher_score": 0.73},
     "teacher 0.73 > median positive 0.80 - 10% = 0.72 (relative margin)"),
    # the one candidate scores above the positive less 5%: "auto" takes the lowest positive
    (dict(relative_margin=0.025), {"teacher_score": 0.79},
     "teacher 0.79 > lowest positive 0.80 - 2.5% = 0.78 (relative margin)"),
    (dict(absolute_margin=0.05), {"teacher_score": 0.76},
     "teacher 0.76 > median positive 0.80 - 0.05 = 0.75 (absolute margin)"),
    # both margins on: the lower line is the one a score between them is above
    (dict(relative_margin=0.1, absolute_margin=0.05), {"teacher_score": 0.73},
     "teacher 0.73 > median positive 0.80 - 10% = 0.72 (relative margin)"),
    (dict(relative_margin=0.01, absolute_margin=0.05), {"teacher_score": 0.76},
     "teacher 0.76 > median positive 0.80 - 0.05 = 0.75 (absolute margin)"),
    (dict(relative_margin=0.1, margin_ref="mean"), {"teacher_score": 0.73},
     "teacher 0.73 > mean positive 0.80 - 10% = 0.72 (relative margin)"),
    (dict(ceiling=0.7, relative_margin=0.1), {"teacher_score": 0.75}, "teacher 0.75 > ceiling 0.70"),
    (dict(near_dup=0.9), {"pos_sim_max": 0.985}, "cosine 0.985 to positive p1 (near-duplicate > 0.90)"),
    (dict(cluster_rule=True), {"cluster": 5}, "same k-means cluster 5 as positive p1"),
    (dict(skip_n=10), {"dense_rank": 3}, "rank 3 in dense top-10 (skip-N 10)"),
    (dict(skip_n=3), {"bm25_rank": 2, "dense_rank": 1}, "rank 2 in BM25 top-3 and rank 1 in dense top-3 (skip-N 3)"),
    (dict(skip_n=3), {"bm25_rank": 3, "dense_rank": 7}, "rank 3 in BM25 top-3 (skip-N 3)"),
    (dict(), {"teacher_score": NAN}, "not scored by the teacher (outside teacher_top_n)"),
    (dict(floor=0.2), {"teacher_score": 0.12}, "teacher 0.12 < floor 0.20"),
    (dict(floor=0.2), {"teacher_score": 0.1999}, "teacher 0.1999 < floor 0.20"),
    (dict(), {}, "hard band, rank 1 of 1: selected"),
    (dict(sampling="random"), {}, "hard band, rank 1 of 1: selected (random draw)"),
])
def test_each_rule_gives_its_reason_with_its_numbers(params, candidate, expected):
    assert reason_of(candidate, **params) == expected


@pytest.mark.parametrize("turned_off, expected", [
    ({}, "teacher 0.10 > ceiling 0.05"),
    (dict(ceiling=None), "cosine 0.990 to positive p1 (near-duplicate > 0.90)"),
    (dict(ceiling=None, near_dup=None), "same k-means cluster 5 as positive p1"),
    (dict(ceiling=None, near_dup=None, cluster_rule=False), "rank 1 in BM25 top-1 (skip-N 1)"),
    (dict(ceiling=None, near_dup=None, cluster_rule=False, skip_n=0), "teacher 0.10 < floor 0.50"),
])
def test_the_reason_names_the_first_rule_that_matched(turned_off, expected):
    assert reason_of(EVERYTHING, **{**ALL_ON, **turned_off}) == expected


def test_a_pool_without_teacher_scores_says_so():
    frame = one_candidate({"teacher_score": NAN}, positive={"teacher_score": NAN})
    assert reasons(frame, curate(frame, CurateParams(**OFF)))[1] == ("not scored by the teacher "
                                                                     "(no teacher has scored this pool)")


def test_near_duplicate_of_one_of_several_positives_names_no_positive():
    frame = pool_frame([{"doc_id": "p1", "is_positive": True, "teacher_score": 0.8},
                        {"doc_id": "p2", "is_positive": True, "teacher_score": 0.8},
                        {"doc_id": "c1", "pos_sim_max": 0.95, "teacher_score": 0.5}])
    # pos_sim_max keeps the highest cosine only, so which positive it belongs to is unknown
    assert reasons(frame, curate(frame, CurateParams(**{**OFF, "near_dup": 0.9})))[2] == (
        "cosine 0.950 to its nearest positive (near-duplicate > 0.90)")


def test_same_cluster_names_the_positive_in_that_cluster():
    frame = pool_frame([{"doc_id": "p1", "is_positive": True, "cluster": 3, "teacher_score": 0.8},
                        {"doc_id": "p2", "is_positive": True, "cluster": 8, "teacher_score": 0.8},
                        {"doc_id": "c1", "cluster": 8, "teacher_score": 0.5},
                        {"query_id": "q2", "doc_id": "p3", "is_positive": True, "cluster": 8, "teacher_score": 0.8},
                        {"query_id": "q2", "doc_id": "c2", "cluster": 8, "teacher_score": 0.5}])
    explained = reasons(frame, curate(frame, CurateParams(**{**OFF, "cluster_rule": True})))
    assert list(explained[[2, 4]]) == ["same k-means cluster 8 as positive p2", "same k-means cluster 8 as positive p3"]


@pytest.mark.parametrize("sampling, picked, left", [
    ("top", ": selected", ": not sampled (quota 2)"),
    ("random", ": selected (random draw)", ": not drawn (random, quota 2)"),
    ("simans", ": selected (SimANS draw)", ": not drawn (simans, quota 2)"),
])
def test_hard_band_reasons_rank_by_teacher_score_and_say_whether_sampled(sampling, picked, left):
    scores = [0.5, 0.6, 0.4, 0.3]
    frame = pool_frame([{"doc_id": "p1", "is_positive": True, "teacher_score": 0.8}]
                       + [{"doc_id": f"c{i}", "fused_rank": i + 1, "teacher_score": s} for i, s in enumerate(scores)])
    result = curate(frame, CurateParams(**{**OFF, "negatives": 2, "sampling": sampling}))
    explained = reasons(frame, result)[1:]
    ranks = [2, 1, 3, 4]
    assert list(explained) == [f"hard band, rank {r} of 4{picked if s else left}"
                               for r, s in zip(ranks, result.selected[1:])]
    if sampling == "top":
        assert list(result.selected[1:]) == [True, True, False, False]


@pytest.mark.parametrize("params", RULE_MIXES)
def test_reasons_agree_with_labels_row_by_row_and_per_query_slice(params):
    frame = random_pool()
    result = curate(frame, params)
    explained = reasons(frame, result)
    labels = list(result.labels)
    hard_per_query = frame.assign(label=labels).query("label == 'hard'").groupby("query_id").size()
    patterns = {
        "positive": r"labelled positive",
        "false_negative": r"teacher (\S+) > (?:ceiling|(?:lowest|median|mean) positive \S+ - \S+ =) (\S+)"
                          r"(?: \((?:relative|absolute) margin\))?",
        "near_duplicate": r"cosine (\S+) to (?:its nearest positive|positive \S+) \(near-duplicate > (\S+)\)",
        "same_cluster": r"same k-means cluster (\d+) as positive (\S+)",
        "skipped": r"rank \d+ in (?:BM25|dense) top-\d+(?: and rank \d+ in dense top-\d+)? \(skip-N \d+\)",
        "unscored": r"not scored by the teacher \(outside teacher_top_n\)",
        "easy": r"teacher (\S+) < floor (\S+)",
        "hard": r"hard band, rank (\d+) of (\d+): (selected|not sampled \(quota \d+\))",
    }
    for i, (label, reason) in enumerate(zip(labels, explained)):
        row = frame.iloc[i]
        match = re.fullmatch(patterns[label], reason)
        assert match, (label, reason)
        if label in ("false_negative", "near_duplicate"):
            assert float(match[1]) > float(match[2])
        elif label == "easy":
            assert float(match[1]) < float(match[2])
        elif label == "same_cluster":
            positive = frame[(frame["doc_id"] == match[2]) & (frame["query_id"] == row["query_id"])].iloc[0]
            assert positive["is_positive"] and positive["cluster"] == row["cluster"] == int(match[1])
        elif label == "hard":
            assert int(match[2]) == hard_per_query[row["query_id"]]
            assert (match[3] == "selected") == result.selected[i] == (int(match[1]) <= params.negatives)
    codes = pd.factorize(frame["query_id"])[0]
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])  # each query's first row, then the end
    for start, end in [*zip(bounds[:-1], bounds[1:]), (bounds[2], bounds[5])]:  # each query, and three together
        assert list(reasons(frame, result, rows=(start, end))) == list(explained[start:end])


def test_reasons_refuse_a_curation_of_another_frame():
    frame = one_candidate({})
    with pytest.raises(DataError, match="curation has 2 rows but the table 3"):
        reasons(pool_frame([{}, {}, {}]), curate(frame, CurateParams()))


@pytest.mark.parametrize("params", [*RULE_MIXES, CurateParams(sampling="simans", negatives=4, seed=3)])
def test_combined_curations_of_query_runs_equal_one_curation(params):
    frame = random_pool()
    whole = curate(frame, params)
    starts = np.flatnonzero(np.r_[True, frame["query_id"].to_numpy()[1:] != frame["query_id"].to_numpy()[:-1]])
    cuts = [0, int(starts[1]), int(starts[4]), len(frame)]  # runs of 1, 3 and the remaining queries
    # margin_ref "auto" chooses on the whole pool: each run is given its share (None for the other references)
    merged = combine([curate(frame.iloc[a:b], params, auto_share=whole.auto_share) for a, b in zip(cuts[:-1], cuts[1:])])
    assert list(merged.labels) == list(whole.labels)
    np.testing.assert_array_equal(merged.selected, whole.selected)
    np.testing.assert_array_equal(merged.neg_rank, whole.neg_rank)
    assert merged.counts == whole.counts and merged.summary() == whole.summary()
    assert merged.short_queries == whole.short_queries and merged.n_queries == whole.n_queries


def test_combined_curations_carry_the_verdicts_each_run_applied():
    from hnm_core.curate.overrides import Override, Overrides

    frame = random_pool()
    verdicts = Overrides((Override("q0", "d0-1", "unlabelled_positive"), Override("q5", "d5-2", "bad_negative")))
    params = CurateParams(**OFF)
    whole = curate(frame, params, verdicts)
    starts = np.flatnonzero(np.r_[True, frame["query_id"].to_numpy()[1:] != frame["query_id"].to_numpy()[:-1]])
    cuts = [0, int(starts[3]), len(frame)]
    merged = combine([curate(frame.iloc[a:b], params, verdicts) for a, b in zip(cuts[:-1], cuts[1:])])
    assert list(merged.labels) == list(whole.labels) and merged.counts == whole.counts
    assert merged.count("unlabelled_positive") == merged.count("bad_negative") == 1
    assert merged.overrides is verdicts


def relevant_looking_pool(near_best: int) -> pd.DataFrame:
    """Two queries of three positives (0.9, 0.6, 0.5) and ten candidates; in q1 `near_best` of them score 0.87,
    above the best positive less 5% (0.855), the rest 0.31 + 0.03 i (up to 0.58); q2's all score 0.2-0.38."""
    rows = []
    for q, candidates in (("q1", [0.87 if i < near_best else 0.31 + 0.03 * i for i in range(10)]),
                          ("q2", [0.2 + 0.02 * i for i in range(10)])):
        rows += [{"query_id": q, "doc_id": f"{q}p{i}", "is_positive": True, "teacher_score": s}
                 for i, s in enumerate((0.9, 0.6, 0.5))]
        rows += [{"query_id": q, "doc_id": f"{q}c{i}", "fused_rank": i + 1, "teacher_score": s}
                 for i, s in enumerate(candidates)]
    return pool_frame(rows)


def test_positive_like_share_is_the_mean_share_of_candidates_near_the_best_positive():
    assert positive_like_share(relevant_looking_pool(4)) == pytest.approx((0.4 + 0.0) / 2)
    # a query without a scored positive or without a scored candidate is not counted
    lone = pool_frame([{"query_id": "q3", "doc_id": "x", "teacher_score": 0.99}])
    assert positive_like_share(pd.concat([relevant_looking_pool(4), lone], ignore_index=True)) == pytest.approx(0.2)
    assert math.isnan(positive_like_share(lone))
    # other rows counted as positives (the audit's hidden ones): q1's four at 0.87 are no longer candidates
    frame = relevant_looking_pool(4)
    as_positive = frame["is_positive"].to_numpy() | (frame["teacher_score"] == np.float32(0.87)).to_numpy()
    assert as_positive.sum() == 10 and positive_like_share(frame, as_positive) == pytest.approx(0.0)


@pytest.mark.parametrize("near_best, chose, share", [(4, "min", "20.0%"), (2, "median", "10.0%")])
def test_auto_takes_the_lowest_positive_where_the_pool_looks_relevant_and_the_median_elsewhere(near_best, chose,
                                                                                                 share):
    frame = relevant_looking_pool(near_best)
    params = CurateParams(**{**OFF, "relative_margin": 0.05, "negatives": 3})
    auto = curate(frame, dataclasses.replace(params, margin_ref="auto"))
    fixed = curate(frame, dataclasses.replace(params, margin_ref=chose))
    assert auto.margin_ref == chose and auto.params.margin_ref == "auto"
    assert list(auto.labels) == list(fixed.labels)
    np.testing.assert_array_equal(auto.selected, fixed.selected)
    # q1's candidates at 0.49-0.58 lie above the lowest positive less 5% (0.475); the median's (0.57) only 0.58
    flagged = int((np.asarray(auto.labels) == "false_negative").sum())
    assert flagged == near_best + (4 if chose == "min" else 1)
    word = {"min": "lowest", "median": "median"}[chose]
    assert f"the query's {word} positive score less 5%" in auto.summary()[1]
    assert f"Auto chose the {word} positive: {share} of candidates score above their query's best positive less 5%" \
        in auto.summary()[1]
    assert auto.auto_note in auto.summary()[1]
    # 20% lies where no collection was measured (10% to 21%): the note asks for a proof of both; 10% does not
    assert ("No collection measured so far lies between 10% and 21%: prove the lowest and the median positive both"
            in auto.auto_note) == (chose == "min")
    reason = reasons(frame, auto)[list(frame["doc_id"]).index("q1c9")]
    assert reason.startswith(f"teacher 0.58 > {word} positive")
    line = margin_thresholds(frame, auto.params)
    assert line["q1"] == pytest.approx((0.5 if chose == "min" else 0.6) * 0.95)
    assert fixed.auto_note is None and not any("Auto" in s for s in fixed.summary())
    # with no margin on, auto has nothing to choose for: no note, no sentence (the manifest still records the share)
    off = curate(frame, dataclasses.replace(params, relative_margin=None, absolute_margin=None))
    assert off.auto_note is None and not any("Auto" in s for s in off.summary())
    assert off.auto_record == auto.auto_record


def test_auto_chooses_by_the_share_it_is_given():
    """The Ray engine curates runs of queries and the audit a pool with positives hidden: both pass the share of the
    pool they stand for, and a run curated with it labels as the whole pool does."""
    frame = relevant_looking_pool(4)  # 20% on the whole pool; q1 alone 40%, q2 alone 0%
    params = CurateParams(**{**OFF, "relative_margin": 0.05, "margin_ref": "auto"})
    q2 = frame.iloc[13:]
    assert curate(q2, params).margin_ref == "median"
    given = curate(q2, params, auto_share=0.2)
    assert given.margin_ref == "min" and given.auto_share == 0.2
    assert curate(q2, dataclasses.replace(params, margin_ref="mean"), auto_share=0.2).auto_share is None
    whole = curate(frame, params)
    merged = combine([curate(frame.iloc[:13], params, auto_share=whole.auto_share), given])
    assert list(merged.labels) == list(whole.labels) and merged.summary() == whole.summary()
    assert merged.margin_ref == "min"
