"""selection: the exported negatives' score groups, mean hardness and rule drops, and the before/after of two
curations, against plain pandas recomputations on hand-made pools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hnm_core.curate.rules import CurateParams, curate
from hnm_core.errors import DataError
from hnm_core.curate.selection import GROUPS, query_change, selection_change, selection_view
from tests.test_curate import OFF, pool_frame


def two_queries() -> pd.DataFrame:
    """q1: positive p1 (0.9, cluster 5) and candidates a..e; q2: positive p2 (0.8) and candidates f..h. Candidate
    `a` shares p1's cluster, `b` is q1's top BM25 hit; `h` is unscored."""
    rows = [
        {"query_id": "q1", "doc_id": "p1", "is_positive": True, "teacher_score": 0.9, "cluster": 5},
        {"query_id": "q1", "doc_id": "a", "teacher_score": 0.85, "cluster": 5, "fused_rank": 1},
        {"query_id": "q1", "doc_id": "b", "teacher_score": 0.7, "bm25_rank": 1, "fused_rank": 2},
        {"query_id": "q1", "doc_id": "c", "teacher_score": 0.6, "fused_rank": 3},
        {"query_id": "q1", "doc_id": "d", "teacher_score": 0.4, "fused_rank": 4},
        {"query_id": "q1", "doc_id": "e", "teacher_score": 0.1, "fused_rank": 5},
        {"query_id": "q2", "doc_id": "p2", "is_positive": True, "teacher_score": 0.8},
        {"query_id": "q2", "doc_id": "f", "teacher_score": 0.5, "fused_rank": 1},
        {"query_id": "q2", "doc_id": "g", "teacher_score": 0.3, "fused_rank": 2},
        {"query_id": "q2", "doc_id": "h", "fused_rank": 3},
    ]
    return pool_frame(rows)


def curated(frame: pd.DataFrame, **params):
    return curate(frame, CurateParams(**{**OFF, "negatives": 2, "sampling": "top", **params}))


def test_groups_and_mean_hardness_match_a_pandas_recomputation():
    frame = two_queries()
    curation = curated(frame, floor=0.2)
    view = selection_view(frame, curation, bins=7)
    labelled = frame.assign(label=np.asarray(curation.labels), selected=curation.selected)
    expected = {
        "selected negatives": labelled.loc[labelled["selected"], "teacher_score"],
        "hard band": labelled.loc[labelled["label"] == "hard", "teacher_score"],
        "labelled positives": labelled.loc[labelled["is_positive"], "teacher_score"],
    }
    assert list(view.groups.counts) == list(GROUPS)
    assert len(view.groups.edges) == 8
    # every scored row of the groups lies inside the shared edges: 0.3 (g, the lowest hard one) .. 0.9 (p1)
    assert view.groups.edges[0] == pytest.approx(0.3) and view.groups.edges[-1] == pytest.approx(0.9)
    for name, scores in expected.items():
        assert view.groups.sizes[name] == view.groups.counts[name].sum() == scores.notna().sum()
        assert view.groups.means[name] == pytest.approx(scores.mean())
    # q1 selects a and b (0.85, 0.7), q2 f and g (0.5, 0.3)
    assert view.n_selected == 4
    assert view.mean_hardness == pytest.approx((0.85 + 0.7 + 0.5 + 0.3) / 4)


def test_rule_drops_are_counted_per_rule_even_with_the_teacher_rules_off():
    frame = two_queries()
    view = selection_view(frame, curated(frame, cluster_rule=True))
    assert [rc.label for rc in view.drops] == ["false_negative", "near_duplicate", "same_cluster", "skipped"]
    assert [rc.count for rc in view.drops] == [0, 0, 1, 0]
    assert view.n_false_negatives == 1
    assert view.drops_line() == "ceiling / margins 0 · near-duplicate 0 · same cluster 1 · skip top N 0"
    both = selection_view(frame, curated(frame, cluster_rule=True, ceiling=0.65))
    # a is same-cluster but the ceiling fires first (precedence); b is above the ceiling
    assert [rc.count for rc in both.drops] == [2, 0, 0, 0] and both.n_false_negatives == 2


def test_nothing_selected_has_no_hardness():
    frame = two_queries()
    view = selection_view(frame, curated(frame, ceiling=0.0))
    assert view.n_selected == 0 and np.isnan(view.mean_hardness)
    assert view.groups.sizes["selected negatives"] == 0


def test_change_between_two_curations_counts_and_explains_each_negative():
    frame = two_queries()
    before, after = curated(frame), curated(frame, skip_n=1, cluster_rule=True)
    # q1 before: a, b; after: a same-cluster, b skipped -> c, d. q2 unchanged: f, g.
    assert selection_change(frame, before, after) == (2, 2, 2)
    assert selection_change(frame, before, before) == (4, 0, 0)
    table = query_change(frame, before, after, "q1")
    assert table[["doc_id", "change", "label_after"]].values.tolist() == [
        ["a", "dropped", "same_cluster"], ["b", "dropped", "skipped"], ["c", "added", "hard"], ["d", "added", "hard"]]
    assert table["rank_before"].tolist() == [1, 2, 0, 0] and table["rank_after"].tolist() == [0, 0, 1, 2]
    assert query_change(frame, before, after, "q2")["change"].tolist() == ["kept", "kept"]
    assert query_change(frame, before, after, "no-such-query").empty


def test_a_curation_of_another_frame_is_refused():
    frame = two_queries()
    with pytest.raises(DataError, match="the curation has 10 rows but the table 9"):
        selection_view(frame.iloc[:9], curated(frame))
