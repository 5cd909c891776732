"""studio.persist: a reload (a new session with the same URL) gets back the collection, the mined pool and the
settings; loading another collection resets the Tune settings and says so."""

from __future__ import annotations

import json

from hnm_core.settings import defaults
from streamlit.testing.v1 import AppTest

from studio.persist import PARAM, Saver, prune_sessions, state_path
from tests.test_app import (APP, DATA, MINE, SAMPLE, TUNE, cache_dir, load_sample, new_session,  # noqa: F401
                            open_page, tiny_mine, unescaped)


def save(at: AppTest) -> None:
    """What app.py does after every run of a page (AppTest runs a page switched to without its entry point)."""
    state = at.session_state
    Saver(state["session_box"], state["settings"], state["data"], state["mined"], state["query_id"]).save()


def reload(at: AppTest) -> AppTest:
    """What a browser reload does: a new session on the same URL, so with the same query parameters."""
    again = AppTest.from_file(APP, default_timeout=180)
    again.query_params[PARAM] = at.query_params[PARAM]
    again.run()
    assert not again.exception, again.exception
    return again


def test_a_reload_brings_back_the_collection_the_pool_and_the_settings(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, TUNE)
    skip_n = defaults()["skip_n"] + 3
    at.slider(key="setting:skip_n").set_value(skip_n).run()
    save(at)
    token = at.query_params[PARAM]
    saved = json.loads(state_path(token).read_text(encoding="utf-8"))
    assert saved["settings"]["skip_n"] == skip_n and saved["data"]["kind"] == "sample"

    again = reload(at)
    assert "Restored sample_data, its mined pool and your settings." in [t.value for t in again.toast]
    assert again.session_state["data"].key == at.session_state["data"].key
    pool, before = again.session_state["mined"], at.session_state["mined"]
    assert pool.key == before.key and pool.settings == before.settings
    assert pool.pool.frame.equals(before.pool.frame)
    open_page(again, TUNE)
    assert again.slider(key="setting:skip_n").value == skip_n
    # no "previous" slider state in the new session, but the sliders did move: not "no slider moved yet"
    said = " ".join(c.value for c in again.caption)
    assert "no slider moved on this visit yet" in said and "no slider moved yet" not in said
    assert again.query_params[PARAM] == token
    open_page(again, MINE)
    assert not again.warning  # the pool's settings are the Mine page's: nothing to re-run


def test_a_url_without_a_state_file_starts_empty():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[PARAM] = "0" * 32
    at.run()
    assert not at.exception and at.session_state["data"] is None and not at.toast
    assert at.query_params[PARAM] == "0" * 32


def test_another_collection_resets_the_tune_settings_and_the_same_one_keeps_them(tiny_bi_encoder_dir, tmp_path):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, TUNE)
    at.slider(key="setting:skip_n").set_value(defaults()["skip_n"] + 3).run()
    open_page(at, DATA)
    assert at.radio(key="data_source").value == "Bundled sample" and "load_sample" not in [b.key for b in at.button]
    at.radio(key="data_source").set_value("Folder or file path").run()
    at.text_input(key="data_path").input(str(SAMPLE)).run()  # the sample's folder: the same content
    at.button(key="load_path").click().run()
    assert at.info[0].value == "The same collection as before: the Tune settings are kept."
    assert at.session_state["settings"]["skip_n"] == defaults()["skip_n"] + 3

    (tmp_path / "pairs.jsonl").write_text('{"query": "what is a bank", "positive": "A bank lends money."}\n',
                                          encoding="utf-8")
    open_page(at, DATA)
    at.radio(key="data_source").set_value("Folder or file path").run()
    at.text_input(key="data_path").input(str(tmp_path / "pairs.jsonl")).run()
    at.button(key="load_path").click().run()
    assert at.info[0].value == "Another collection: the Tune settings are back to their defaults."
    assert at.session_state["settings"]["skip_n"] == defaults()["skip_n"]


def test_only_the_newest_session_files_are_kept(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("HNM_CACHE_DIR", str(tmp_path))  # a cache of its own: no other test's session is pruned
    folder = state_path("x").parent
    folder.mkdir(parents=True)
    for i in range(5):
        path = state_path(f"{i:032x}")
        path.write_text("{}", encoding="utf-8")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    assert prune_sessions(keep=2) == 3
    assert sorted(p.name for p in folder.glob("*.json")) == [f"{i:032x}.json" for i in (3, 4)]
    assert prune_sessions(keep=2) == 0


def test_hnm_studio_data_is_loaded_into_every_new_session_and_shown_on_the_data_page(monkeypatch):
    from hnm_core.cli.studio import DATA_ENV, SPLIT_ENV
    from tests.test_app import SAMPLE

    monkeypatch.setenv(DATA_ENV, str(SAMPLE))
    monkeypatch.setenv(SPLIT_ENV, "train")
    at = new_session()
    assert f"Loaded sample_data from {SAMPLE}." in [t.value for t in at.toast]
    assert at.session_state["data"].collection.source.endswith("split train")
    assert at.session_state["settings"]["split"] == "train"
    open_page(at, DATA)
    assert at.text_input(key="data_path").value == str(SAMPLE)
    monkeypatch.setenv(DATA_ENV, str(SAMPLE / "missing"))
    assert "Could not load" in new_session().toast[0].value


def test_the_plain_address_offers_to_resume_the_last_work(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, TUNE)
    skip_n = defaults()["skip_n"] + 2
    at.slider(key="setting:skip_n").set_value(skip_n).run()
    save(at)

    fresh = open_page(new_session(), DATA)  # a new tab on the plain address: no ?session= of the work above
    assert fresh.session_state["data"] is None and fresh.query_params[PARAM] != at.query_params[PARAM]
    offer = next(m.value for m in fresh.markdown if m.value.startswith("**Your last work**"))
    assert "the bundled sample with its mined pool" in offer
    fresh.button(key="resume_work").click().run()
    assert not fresh.exception
    assert fresh.info[0].value == "Resumed sample_data, its mined pool and your settings."
    assert fresh.session_state["data"].key == at.session_state["data"].key
    assert fresh.session_state["mined"].key == at.session_state["mined"].key
    assert fresh.session_state["settings"]["skip_n"] == skip_n
    assert "resume_work" not in [b.key for b in fresh.button]  # offered only while nothing is loaded


def test_the_data_page_shows_the_loaded_source_after_other_pages_and_never_replaces_it_unasked(tmp_path):
    folder = tmp_path / "scifact-like"
    folder.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        (folder / name).write_bytes((SAMPLE / name).read_bytes())
    at = open_page(new_session(), DATA)
    at.radio(key="data_source").set_value("Folder or file path").run()
    at.text_input(key="data_path").input(str(folder)).run()
    at.button(key="load_path").click().run()
    for page in (MINE, TUNE, DATA):  # the Data page's widgets are forgotten while other pages run
        open_page(at, page)
    assert at.radio(key="data_source").value == "Folder or file path"
    assert at.text_input(key="data_path").value == str(folder)
    assert "load_path" not in [b.key for b in at.button]  # no button that loads it again over itself
    assert any("scifact-like is loaded from this path" in unescaped(c.value) for c in at.caption)
    at.radio(key="data_source").set_value("Bundled sample").run()
    assert any("Loading replaces scifact-like." in unescaped(c.value) for c in at.caption)
    assert at.session_state["data"].path == folder  # nothing replaced until the button says so
