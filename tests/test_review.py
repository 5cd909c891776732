"""The review queue and what its verdicts measure: a person-confirmed negative in curate, the queue's probability
sample (curate/review.py), the estimate and its interval on synthetic populations where the truth is known
(curate/estimate.py), the filled review file read back as overrides, the estimate over the audit's grid and the
recommendation (audit/verdicts.py), `hnm review` and `hnm estimate` end to end, and the verdicts as a teacher's
training rows."""

from __future__ import annotations

import dataclasses

import pytest

from hnm_core.curate.overrides import Override, Overrides, read_overrides
from hnm_core.curate.reasons import reasons
from hnm_core.curate.rules import curate

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
