"""studio.progress: the bars' pace (a slow stage still moves, so a Stop is seen) and where a stopped run stopped."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def test_a_slow_stage_updates_every_interval_and_a_stopped_one_says_where():
    def script() -> None:
        import time

        import streamlit as st

        from studio.progress import StreamlitProgress

        report = StreamlitProgress(min_step=0.5, min_seconds=0.05, eta_stages=None)
        report("encode documents", 0, 100)
        for done in (1, 2, 3):
            time.sleep(0.06)
            report("encode documents", done, 100)
        report("bm25 index", 5, 5)
        st.session_state["where"] = report.unfinished()

    at = AppTest.from_function(script, default_timeout=30).run()
    bar = at.get("progress")[0]
    # under a tenth of the stage but past the interval: shown, with the time left at the pace so far
    assert bar.proto.text.startswith("encode documents: 3 / 100 · about ") and bar.proto.text.endswith(" s left")
    assert at.session_state["where"] == ("encode documents", 3, 100)


def test_the_time_left_of_a_resumed_stage_counts_only_this_runs_work():
    def script() -> None:
        from studio.progress import StreamlitProgress

        # a run resumed after a Stop: 1,069 documents come back from the cache at once, then 256 are encoded in 5 s
        times = iter([0.0, 0.01, 5.01])
        report = StreamlitProgress(min_step=0.0, min_seconds=0.0, eta_stages=None, clock=lambda: next(times))
        report("encode documents", 0, 5183)
        report("encode documents", 1069, 5183)
        report("encode documents", 1325, 5183)

    at = AppTest.from_function(script, default_timeout=30).run()
    # 3,858 left at 256 per 5 s: 75 s (the mean over the run, cache included, would say 15 s)
    assert at.get("progress")[0].proto.text == "encode documents: 1,325 / 5,183 · about 75 s left"
