"""The Tune page's live view of the exported set (pages/tune.py over hnm_core.curate.selection): what each number and the
per-query table show is what the library computes for the same settings."""

from __future__ import annotations

import pandas as pd

from hnm_core.curate.rules import LABELS, CurateParams, curate
from hnm_core.curate.selection import query_change, selection_view
from hnm_core.settings import defaults
from tests.test_app import (TUNE, cache_dir, load_sample, metrics, new_session, open_page,  # noqa: F401
                            rules_off, tiny_mine)


def shown_change(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "change" in d.value.columns)


def test_the_live_view_shows_what_the_sliders_do_to_the_exported_negatives(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    rules_off(open_page(at, TUNE))
    pool = at.session_state["mined"].pool
    frame = pool.frame
    at.toggle(key="setting:cluster_rule").set_value(True).run()
    now = curate(frame, CurateParams.from_settings(at.session_state["settings"]))
    view = selection_view(frame, now)
    shown = metrics(at)
    # every false-negative rule is counted, the same-cluster one included, with the teacher-score rules off
    assert shown["False negatives"] == f"{view.n_false_negatives:,}" == f"{now.count('same_cluster'):,}"
    assert shown["Mean hardness"] == f"{view.mean_hardness:.3f}"
    assert f"False negatives by rule: {view.drops_line()}." in at.caption[0].value
    assert "Teacher-score rules (ceiling, margins) are off." in at.markdown[-1].value

    before = now
    at.slider(key="setting:skip_n").set_value(3).run()
    after = curate(frame, CurateParams.from_settings(at.session_state["settings"]))
    changed = frame["query_id"][before.selected != after.selected].iloc[0]
    at.selectbox(key="tune_query").set_value(changed).run()
    expected = query_change(frame, before, after, changed)
    table = shown_change(at)
    assert table["doc_id"].tolist() == expected["doc_id"].tolist()
    assert table["change"].tolist() == expected["change"].tolist() and "dropped" in table["change"].tolist()
    assert set(table.loc[table["change"] == "dropped", "label now"]) <= set(LABELS) - {"hard"}
    assert "Against the previous slider state:" in at.caption[0].value

    # against the table's defaults, the same query compares with a curation of the default settings
    at.radio(key="tune_before").set_value("the table's defaults").run()
    table_defaults = curate(frame, CurateParams.from_settings({**at.session_state["settings"], **defaults("curate")}))
    assert shown_change(at)["doc_id"].tolist() == query_change(frame, table_defaults, after, changed)["doc_id"].tolist()
