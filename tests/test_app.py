"""The Streamlit studio through streamlit.testing.v1.AppTest: every page opened on its own, then widget-driven flows.

Fast tests mine with the tiny random-weight bi-encoder of conftest.py (a real sentence-transformers folder, typed
into the Model box like a person would); the `slow` test runs the real packaged MiniLM on sample_data/ and opens
the UMAP map. All tests share one HNM_CACHE_DIR, so each collection is encoded once per test session.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hnm_core.errors import DataError, ModelLoadError, SettingsError
from hnm_core.outputs.folder import MARKER
from hnm_core.settings import SETTINGS, defaults
from studio import escape, figures, loaders, tables

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SAMPLE = ROOT / "sample_data"
DATA, MINE, EXPLORE, TUNE, REVIEW, EXPORT, TRAIN = ("pages/data.py", "pages/mine.py", "pages/explore.py",
                                                    "pages/tune.py", "pages/review.py", "pages/export.py",
                                                    "pages/train.py")


@pytest.fixture(autouse=True)
def cache_dir(session_cache, monkeypatch) -> Path:
    monkeypatch.setenv("HNM_CACHE_DIR", str(session_cache))
    return session_cache


def new_session(timeout: float = 180) -> AppTest:
    """A fresh browser session on the app's entry point (two calls = two people)."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    assert not at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def type_path(at: AppTest, path: str | Path) -> AppTest:
    """On the Data page of a new session: choose "Folder or file path" and type `path` (not loaded yet)."""
    at = open_page(at, DATA)
    at.radio(key="data_source").set_value("Folder or file path").run()
    at.text_input(key="data_path").input(str(path)).run()
    return at


def load_sample(at: AppTest) -> AppTest:
    open_page(at, DATA)
    at.button(key="load_sample").click().run()
    assert not at.exception
    return at


def mine(at: AppTest, **values: str | int) -> AppTest:
    """Type `values` into the Mine page's widgets (by setting name) and press Run."""
    open_page(at, MINE)
    for name, value in values.items():
        widget = next(w for kind in ("text_input", "number_input", "slider", "selectbox", "radio", "multiselect")
                      for w in getattr(at, kind) if w.key == f"setting:{name}")
        widget.set_value(value).run()  # one run each: a widget may be enabled by an earlier one
    at.button(key="run_mine").click().run()
    assert not at.exception
    return at


def tiny_mine(at: AppTest, model_dir: Path) -> AppTest:
    return mine(at, model=str(model_dir), teacher_model=str(model_dir), max_seq_length=64, top_k=20)


def unescaped(markdown: str) -> str:
    """What a person reads: the text of a Markdown element whose user-supplied parts were escaped (escape.plain)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def label_rows(at: AppTest) -> dict[str, int]:
    """The Tune page's per-label counts table."""
    table = next(d.value for d in at.dataframe if "matched" in d.value.columns)
    return dict(zip(table["label"], table["rows"]))


def rules_off(at: AppTest) -> AppTest:
    """Every labelling rule off on the Tune page, whatever the settings table's defaults are."""
    for name in ("ceiling", "relative_margin", "absolute_margin", "near_dup", "floor"):
        at.checkbox(key=f"setting:{name}:on").uncheck().run()
    at.toggle(key="setting:cluster_rule").set_value(False).run()
    at.slider(key="setting:skip_n").set_value(0).run()
    return at


def widget_keys(at: AppTest) -> set[str]:
    kinds = ("text_input", "number_input", "slider", "selectbox", "radio", "multiselect", "checkbox", "toggle")
    return {w.key for kind in kinds for w in getattr(at, kind) if w.key}


class Upload(NamedTuple):
    """What a browser upload gives the loaders: a name (chosen by the client) and the bytes."""

    name: str
    content: bytes

    def getvalue(self) -> bytes:
        return self.content


# --------------------------------------------------------------------------------------------------------------------
# Every page on its own


@pytest.mark.parametrize("page", [DATA, MINE, EXPLORE, TUNE, REVIEW, EXPORT, TRAIN])
def test_every_page_opens_in_a_fresh_session(page):
    at = open_page(new_session(), page)
    if page == DATA:
        assert at.radio(key="data_source").value == "Bundled sample"
    else:
        assert "No data loaded yet" in at.info[0].value


@pytest.mark.parametrize("page", [EXPLORE, TUNE, REVIEW, EXPORT])
def test_pages_after_data_but_before_mining_point_to_mine(page):
    at = open_page(load_sample(new_session()), page)
    assert "Nothing mined yet" in at.info[0].value


# --------------------------------------------------------------------------------------------------------------------
# Data


def test_sample_loads_and_is_summarised():
    at = load_sample(new_session())
    numbers = metrics(at)
    assert (numbers["Documents"], numbers["Queries"], numbers["Labelled positives"]) == ("253", "42", "62")
    per_query = next(d.value for d in at.dataframe if "positives per query" in d.value.columns)
    assert per_query["queries"].sum() == 42 and (per_query["positives per query"] * per_query["queries"]).sum() == 62
    assert at.success[0].value.startswith("None")


def test_a_bad_path_is_a_readable_error_not_a_traceback(tmp_path):
    at = type_path(new_session(), tmp_path / "missing")
    at.button(key="load_path").click().run()
    assert not at.exception
    assert "does not exist" in at.error[0].value and "Fix:" in unescaped(at.error[0].value)


def test_a_folder_path_offers_its_qrels_splits(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (folder / name).write_bytes((SAMPLE / name).read_bytes())
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq01\td032\t1\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_bytes((SAMPLE / "qrels.tsv").read_bytes())
    at = type_path(new_session(), folder)
    assert at.selectbox(key="setting:split").options == ["dev", "test"]
    at.selectbox(key="setting:split").set_value("dev").run()
    at.button(key="load_path").click().run()
    assert metrics(at)["Queries"] == "1"
    assert "split dev" in at.caption[1].value


def test_beir_files_upload_through_the_page():
    at = open_page(new_session(), DATA)
    at.radio(key="data_source").set_value("Upload files").run()
    files = [(name, (SAMPLE / name).read_bytes(), "application/octet-stream")
             for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv")]
    at.file_uploader(key="data_upload").set_value(files).run()
    at.button(key="load_upload").click().run()
    assert not at.exception and not at.error
    assert (metrics(at)["Documents"], metrics(at)["Queries"]) == ("253", "42")


def test_a_pairs_file_uploads_and_its_problems_are_shown():
    at = open_page(new_session(), DATA)
    at.radio(key="data_source").set_value("Upload files").run()
    rows = "query,positive\nwhat is a cell,A cell is the unit of life.\nwhat is a cell,A cell is the unit of life.\n" \
           "what is a bank,A bank lends money.\n"
    at.file_uploader(key="data_upload").set_value(("pairs.csv", rows.encode(), "text/csv")).run()
    at.button(key="load_upload").click().run()
    assert (metrics(at)["Queries"], metrics(at)["Labelled positives"]) == ("2", "2")
    assert any("repeat" in w.value for w in at.warning)


def test_data_errors_name_the_uploaded_file_and_speak_the_pages_words():
    from studio.errors import PYTHON_ONLY

    at = open_page(new_session(), DATA)
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value(("pairs.csv", b"question,answer_text\nwhat,that\n", "text/csv")).run()
    at.button(key="load_upload").click().run()
    shown = unescaped(at.error[0].value)
    assert shown.startswith("pairs.csv:") and "/tmp" not in shown  # not the session's temporary folder
    assert "Fix: rename the columns; recognised query columns:" in shown and "query_column" not in shown
    # each Python-only phrase the studio leaves out still occurs in hnm_core (else the rewrite is dead)
    core = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "hnm_core").rglob("*.py"))
    assert all(phrase.strip() in core for phrase in PYTHON_ONLY)


def test_a_folder_without_qrels_says_where_the_labels_go(tmp_path):
    folder = tmp_path / "no-qrels"
    folder.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl"):
        (folder / name).write_bytes((SAMPLE / name).read_bytes())
    at = type_path(new_session(), folder)
    assert not at.get("selectbox")  # no split to pick
    at.button(key="load_path").click().run()
    shown = unescaped(at.error[0].value)
    assert "has no qrels file" in shown and "qrels/<split>.tsv or qrels_<split>.tsv" in shown
    assert "pick one of the splits" not in shown


def test_text_from_the_data_is_shown_as_typed_not_as_markdown(tmp_path):
    folder = tmp_path / "beir"
    folder.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        (folder / name).write_bytes((SAMPLE / name).read_bytes())
    with open(folder / "qrels.tsv", "a", encoding="utf-8") as qrels:
        qrels.write("q01\t![pixel](http://tracker.example/p.png)\t1\n")
    at = type_path(new_session(), folder)
    at.button(key="load_path").click().run()
    warning = next(w.value for w in at.warning if "unknown doc ids" in w.value)
    assert "\\!\\[pixel\\]\\(http\\://tracker" in warning
    assert "![pixel](http://tracker.example/p.png)" in unescaped(warning)


@pytest.mark.parametrize("text", ["![x](http://e/x.png)", "$x^2$", "<b>bold</b>", ":red[alarm] :smile:",
                                  "*a* _b_ `c` # d", "C:\\data\\set [1]"])
def test_plain_escapes_every_markdown_character_and_keeps_the_text(text):
    escaped = escape.plain(text)
    assert unescaped(escaped) == text
    assert not re.search(r"(?<!\\)[\[\]()!$<>:*_`#]", escaped.replace("\\\\", ""))


@pytest.mark.parametrize("names, message", [
    (["corpus.jsonl"], "needs corpus.jsonl, queries.jsonl and a qrels"),
    (["corpus.jsonl", "queries.jsonl", "qrels.tsv", "notes.txt"], "remove notes.txt"),
    (["a.csv", "b.csv"], "not a BEIR set"),
    (["model.pkl"], "not a file type hnm reads"),
])
def test_upload_mistakes_say_what_to_upload(tmp_path, names, message):
    files = [Upload(name, (SAMPLE / name).read_bytes() if (SAMPLE / name).exists() else b"x") for name in names]
    with pytest.raises(DataError, match=message):
        loaders.load_uploads(files, tmp_path / "upload")


def test_uploaded_qrels_splits_are_laid_out_as_beir(tmp_path):
    qrels = (SAMPLE / "qrels.tsv").read_bytes()
    files = [Upload(name, (SAMPLE / name).read_bytes()) for name in ("corpus.jsonl", "queries.jsonl")]
    files += [Upload("train.tsv", qrels), Upload("dev.tsv", b"query-id\tcorpus-id\tscore\nq01\td032\t1\n")]
    data = loaders.load_uploads(files, tmp_path / "upload", split="train")
    assert data.collection.source.endswith("split train") and len(data.collection.query_ids) == 42
    assert sorted(p.name for p in (tmp_path / "upload" / "qrels").iterdir()) == ["dev.tsv", "train.tsv"]
    other = loaders.load_uploads(files, tmp_path / "upload", split="test")  # not uploaded: the first by name
    assert other.collection.source.endswith("split dev") and other.collection.query_ids == ("q01",)


def test_uploaded_names_cannot_escape_the_session_folder(tmp_path):
    files = [Upload(f"../../{name}", (SAMPLE / name).read_bytes())
             for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv")]
    data = loaders.load_uploads(files, tmp_path / "session" / "upload")
    assert len(data.collection.doc_ids) == 253
    assert sorted(p.name for p in (tmp_path / "session" / "upload").iterdir()) == \
        ["corpus.jsonl", "qrels.tsv", "queries.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["session"]


def test_the_app_serves_on_localhost_with_an_upload_cap():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["address"] == "localhost"
    assert 0 < config["server"]["maxUploadSize"] <= 1000
    assert config["browser"]["gatherUsageStats"] is False


# --------------------------------------------------------------------------------------------------------------------
# Mine, Tune, Export with the tiny model


def test_mining_errors_are_readable_messages(tmp_path, monkeypatch):
    at = load_sample(new_session())
    open_page(at, MINE)
    at.multiselect(key="setting:sources").set_value([]).run()
    at.button(key="run_mine").click().run()
    assert not at.exception and "sources: give at least one of bm25, dense" in unescaped(at.error[0].value)
    # a model that cannot load is named under its box before Run, and Run waits for another
    open_page(at, MINE)
    at.multiselect(key="setting:sources").set_value(["dense"]).run()
    at.text_input(key="setting:model").input(str(tmp_path / "no-such-model")).run()
    assert "does not exist" in at.error[0].value and "Fix:" in unescaped(at.error[0].value)
    assert at.button(key="run_mine").disabled
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no download tried: a hub name must be in the local cache
    at.text_input(key="setting:model").input("no-such-org/no-such-model").run()
    assert "nor a model in the local Hugging Face cache" in unescaped(at.error[0].value)
    assert at.button(key="run_mine").disabled


def test_tiny_mine_then_tune_sliders_change_the_counts_and_export_reads_back(tiny_bi_encoder_dir, tmp_path):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    assert any("candidates for 42 queries" in m.value for m in at.markdown)
    at.button(key="run_mine").click().run()  # the same settings again: the server's cache, not a 0.0 s mining
    assert any("loaded from the cache" in m.value for m in at.markdown)
    assert not any("mined in 0.0 s" in m.value for m in at.markdown)
    rules_off(open_page(at, TUNE))
    # margin_ref "auto" says under its radio which positive it chose, while a margin is on to use it
    assert at.radio(key="setting:margin_ref").value == "auto"
    assert not any(c.value.startswith("Auto chose") for c in at.caption)
    at.checkbox(key="setting:relative_margin:on").check().run()
    shown = [c.value.replace("\\", "") for c in at.caption]  # the page escapes markdown
    assert any(re.match(r"Auto chose the (lowest|median) positive: [\d.]+% of candidates", c) for c in shown)
    at.checkbox(key="setting:relative_margin:on").uncheck().run()
    before = label_rows(at)
    assert before["false_negative"] == before["skipped"] == before["same_cluster"] == 0
    assert metrics(at)["Hard band"] == f"{before['hard']:,}"

    # the quota is per query (hnm_core.curate), and the slider says so, as the summary does
    assert at.slider(key="setting:negatives").label == "Negatives per query"
    assert any(f"up to {defaults()['negatives']} per query" in m.value for m in at.markdown)
    at.checkbox(key="setting:ceiling:on").check().run()
    ceiling = at.slider(key="setting:ceiling")
    ceiling.set_value(round(ceiling.min + (ceiling.max - ceiling.min) / 4, 2)).run()
    after_ceiling = label_rows(at)
    assert after_ceiling["false_negative"] > 0 and after_ceiling["hard"] < before["hard"]
    at.slider(key="setting:skip_n").set_value(3).run()
    after_skip = label_rows(at)
    assert after_skip["skipped"] > 0 and after_skip["hard"] < after_ceiling["hard"]
    assert metrics(at)["False negatives"] == f"{after_skip['false_negative'] + after_skip['skipped']:,}"

    open_page(at, EXPORT)
    at.text_input(key="export_dir").input(str(tmp_path / "round-1")).run()
    at.button(key="export_write").click().run()
    assert not at.error and "Wrote" in at.success[0].value
    manifest = json.loads((tmp_path / "round-1" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["skip_n"] == 3 and manifest["settings"]["ceiling"] == ceiling.value
    assert manifest["counts"] == after_skip
    triplets = pd.read_parquet(tmp_path / "round-1" / "triplet.parquet")
    assert list(triplets.columns) == ["anchor", "positive", "negative"]
    assert len(triplets) == manifest["files"]["triplet.parquet"]["rows"] > 0
    pool = pd.read_parquet(tmp_path / "round-1" / "pool.parquet")
    assert pool["selected"].sum() == manifest["n_selected"]
    assert set(pool.loc[pool["selected"], "label"]) == {"hard"}
    reason = pool["reason"].groupby(pool["label"])
    assert reason.get_group("skipped").str.fullmatch(r"rank \d+ in .* \(skip-N 3\)").all()
    assert reason.get_group("false_negative").str.fullmatch(rf"teacher \S+ > ceiling {ceiling.value:.2f}").all()
    assert pool.loc[pool["selected"], "reason"].str.endswith(": selected").all()
    # the same folder again is refused unless replacing is ticked
    at.button(key="export_write").click().run()
    assert "exists and is not empty" in at.error[0].value
    # a folder inside the data the pool was mined from is refused, ticked or not
    at.text_input(key="export_dir").input(str(SAMPLE / "round-1")).run()
    at.checkbox(key="export_overwrite").check().run()
    at.button(key="export_write").click().run()
    assert "lies inside the input" in at.error[0].value and not (SAMPLE / "round-1").exists()


def test_downloads_are_built_in_a_private_folder_and_previewed(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, EXPORT)
    at.multiselect(key="setting:formats").set_value(["triplet", "flag"]).run()
    at.radio(key="setting:file_type").set_value("jsonl").run()
    at.button(key="export_build").click().run()
    assert not at.exception and not at.error
    out = at.session_state["export"].out_dir
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "flag.jsonl", "manifest.json", "triplet.jsonl"]
    assert out.parent == at.session_state["workdir"].path
    previews = [d.value for d in at.dataframe]
    assert list(previews[0].columns) == ["anchor", "positive", "negative"] and len(previews[0]) == 5
    assert {"query", "pos", "neg"} <= set(previews[1].columns)
    first = json.loads((out / "triplet.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first == previews[0].iloc[0].to_dict()
    # changing a setting afterwards says the files are stale
    open_page(at, TUNE)
    at.slider(key="setting:negatives").set_value(3).run()
    open_page(at, EXPORT)
    assert "changed since these files were written" in at.warning[0].value


def test_manifest_settings_replay_into_the_widgets(tiny_bi_encoder_dir, tmp_path):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, TUNE)
    skip_n, negatives = defaults()["skip_n"] + 1, defaults()["negatives"] - 1
    at.slider(key="setting:skip_n").set_value(skip_n).run()
    at.slider(key="setting:negatives").set_value(negatives).run()
    open_page(at, EXPORT)
    at.text_input(key="export_dir").input(str(tmp_path / "round")).run()
    at.button(key="export_write").click().run()

    other = load_sample(new_session())
    open_page(other, MINE)
    manifest = (tmp_path / "round" / "manifest.json").read_bytes()
    other.file_uploader(key="replay_manifest").set_value(("manifest.json", manifest, "application/json")).run()
    other.button(key="replay_apply").click().run()
    assert other.text_input(key="setting:model").value == str(tiny_bi_encoder_dir)
    assert other.number_input(key="setting:top_k").value == 20
    other.button(key="run_mine").click().run()
    open_page(other, TUNE)
    assert other.slider(key="setting:skip_n").value == skip_n
    assert other.slider(key="setting:negatives").value == negatives


def test_a_verdict_on_disk_relabels_explore_and_export_and_a_damaged_file_is_named(tiny_bi_encoder_dir):
    from hnm_core.curate.overrides import add_override
    from studio.corrections import overrides_path

    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    rules_off(open_page(at, TUNE))  # the random model's scores: no rule, so the query has selected negatives
    open_page(at, EXPLORE)
    query = at.selectbox(key="explore_query").value
    table = next(d.value for d in at.dataframe if "teacher_score" in d.value.columns)
    doc = table.loc[table["label"] == "hard (selected)", "doc_id"].iloc[0]
    path = overrides_path(at.session_state["data"], at.session_state["mined"])
    assert path.parent.name == "overrides" and not path.exists()
    try:
        add_override(path, query, doc, "unlabelled_positive", "answers it")
        at.run()
        table = next(d.value for d in at.dataframe if "teacher_score" in d.value.columns).set_index("doc_id")
        assert table.loc[doc, "label"] == "unlabelled_positive"
        assert table.loc[doc, "reason"] == "corrected by you: unlabelled positive (answers it)"
        open_page(at, EXPORT)
        assert any("1 unlabelled positive and 0 bad negatives" in unescaped(m.value) for m in at.markdown)
        with path.open("a", encoding="utf-8") as f:
            f.write('{"query_id": "%s", "doc_id": "%s", "verdict": "fine"}\n' % (query, doc))
        at.run()
        assert unescaped(at.error[0].value).startswith(f"{path}:2: unknown verdict 'fine'")
    finally:
        path.unlink(missing_ok=True)  # the cache is shared by every test of the session


def test_review_verdicts_go_to_the_overrides_file_move_the_queue_and_estimate_the_export(tiny_bi_encoder_dir):
    from studio.corrections import overrides_path

    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    rules_off(open_page(at, TUNE))  # the random model's scores: no rule, so every query exports negatives
    open_page(at, REVIEW)
    path = overrides_path(at.session_state["data"], at.session_state["mined"])
    held = at.session_state["review_pinned"]
    first = held.queue.table.iloc[0]
    assert at.subheader[0].value.startswith(f"Draw 1 · query {first['query_id']}")
    assert metrics(at)["Unlabelled positives"] == "0" and "Estimated share" not in metrics(at)
    try:
        at.button(key="review_unlabelled_positive").click().run()
        written = path.read_text(encoding="utf-8").splitlines()
        assert len(written) == 1 and f'"note": "review {held.queue_id} draw 1"' in written[0]
        assert f'"doc_id": "{first["doc_id"]}"' in written[0]
        assert metrics(at)["Unlabelled positives"] == "1"
        assert metrics(at)["Estimated share"].endswith("%")
        shown = int(at.subheader[0].value.split()[1])
        repeats = held.queue.table.loc[held.queue.table["repeat_of"] == 1, "draw"].tolist()
        assert shown == min(d for d in held.queue.table["draw"] if d != 1 and d not in repeats)
        at.button(key="review_skip").click().run()
        assert metrics(at)["Skipped"] == "1" and int(at.subheader[0].value.split()[1]) > shown
        at.button(key="review_undo").click().run()  # the skip
        assert metrics(at)["Skipped"] == "0" and int(at.subheader[0].value.split()[1]) == shown
        open_page(at, TUNE)
        assert any("Your verdicts on the Review page's queue" in unescaped(m.value) for m in at.markdown)
        open_page(at, TRAIN)  # the teacher can learn from them
        assert at.checkbox(key="teacher_verdicts").label == "Teach it your 1 verdict too"
        open_page(at, EXPLORE)  # the verdict relabels the candidate on every page
        at.selectbox(key="explore_query").set_value(first["query_id"]).run()
        table = next(d.value for d in at.dataframe if "teacher_score" in d.value.columns).set_index("doc_id")
        assert table.loc[first["doc_id"], "label"] == "unlabelled_positive"
    finally:
        path.unlink(missing_ok=True)  # the cache is shared by every test of the session


def test_review_says_when_a_drawn_candidate_was_marked_before_and_does_not_count_it(tiny_bi_encoder_dir):
    from studio.corrections import mark, overrides_path

    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    rules_off(open_page(at, TUNE))
    open_page(at, REVIEW)
    first = at.session_state["review_pinned"].queue.table.iloc[0]
    data, mined = at.session_state["data"], at.session_state["mined"]
    try:
        mark(data, mined, first["query_id"], first["doc_id"], "bad_negative", "")  # as Explore marks it
        at.run()
        assert at.subheader[0].value.startswith("Draw 1 ·")  # the queue's own draw is still open
        assert any("You marked it a bad negative before (on Explore or another queue)" in unescaped(c.value)
                   for c in at.caption)
        assert metrics(at)["Bad negatives"] == "0"
    finally:
        overrides_path(data, mined).unlink(missing_ok=True)


def test_a_bm25_only_pool_explains_the_missing_map_and_still_lists_candidates(tiny_bi_encoder_dir):
    at = mine(load_sample(new_session()), sources=["bm25"], teacher_model=str(tiny_bi_encoder_dir),
              max_seq_length=64, top_k=20)
    assert any("found by BM25 only" in m.value for m in at.markdown)
    open_page(at, EXPLORE)
    assert "mined with BM25 only" in at.info[0].value and not at.get("plotly_chart")
    table = next(d.value for d in at.dataframe if "teacher_score" in d.value.columns)
    assert set(table["sources"]) == {"bm25"} and table["dense_rank"].eq(0).all()


def test_a_cross_encoder_teacher_leaves_the_rest_unscored(tiny_bi_encoder_dir, tiny_cross_encoder_dir):
    at = mine(load_sample(new_session()), model=str(tiny_bi_encoder_dir), max_seq_length=64, top_k=20,
              teacher="cross-encoder", teacher_model=str(tiny_cross_encoder_dir), teacher_top_n=5)
    assert not at.error
    assert any("teacher: cross-encoder" in m.value for m in at.markdown)
    rules_off(open_page(at, TUNE))
    rows = label_rows(at)
    assert rows["unscored"] > 0 and rows["hard"] == 42 * 5
    assert any("sigmoid of a cross-encoder logit" in c.value for c in at.caption)
    open_page(at, EXPLORE)
    table = next(d.value for d in at.dataframe if "teacher_score" in d.value.columns)
    reason = table.set_index("label")["reason"]
    assert (reason["unscored"] == "not scored by the teacher (outside teacher_top_n)").all()
    assert (reason["positive"] == "labelled positive").all()
    assert reason["hard (selected)"].str.fullmatch(r"hard band, rank \d+ of 5: selected").all()


def test_a_bi_encoder_is_refused_as_the_cross_encoder_teacher_before_any_scoring(tiny_bi_encoder_dir):
    from hnm_core.models.loading import check_cross_encoder

    at = load_sample(new_session())
    open_page(at, MINE)
    at.radio(key="setting:teacher").set_value("cross-encoder").run()
    box = at.text_input(key="setting:teacher_model")
    assert box.value == "" and box.label == "Cross-encoder folder"  # the bi-encoder's name is not carried over
    assert "Type the folder of a trained cross-encoder" in at.info[0].value
    assert at.button(key="run_mine").disabled

    box.input("all-MiniLM-L6-v2").run()
    with pytest.raises(ModelLoadError) as cli_refusal:
        check_cross_encoder("all-MiniLM-L6-v2")
    # the CLI's one line, before Run, in the page's words: the widgets' labels for the CLI's flags
    cli = str(cli_refusal.value)
    assert "--teacher bi-encoder" in cli and "--teacher-model" in cli
    shown = [unescaped(e.value) for e in at.error]
    assert shown == [cli.replace("--teacher bi-encoder", "“Teacher kind: bi-encoder”")
                     .replace("--teacher-model", "“Cross-encoder folder”")]
    assert at.button(key="run_mine").disabled and at.session_state["mined"] is None

    # each kind keeps its own box: back to the miner's bi-encoder, and the typed folder returns with its kind
    at.radio(key="setting:teacher").set_value("bi-encoder").run()
    assert at.text_input(key="setting:teacher_model").value == "all-MiniLM-L6-v2" and not at.error
    at.radio(key="setting:teacher").set_value("cross-encoder").run()
    assert at.text_input(key="setting:teacher_model").value == "all-MiniLM-L6-v2" and at.error


def test_a_trained_bi_encoder_teacher_mines_as_the_bi_encoder_teacher_and_is_refused_as_a_cross_encoder(
        tiny_bi_encoder_dir, tmp_path):
    from hnm_core.data import load_collection
    from hnm_core.models.files import refuse_other_kind
    from hnm_core.teacher.training import train_teacher

    folder = train_teacher(load_collection(SAMPLE, split="test"), tmp_path / "teacher", kind="bi-encoder",
                           base_model=str(tiny_bi_encoder_dir), folds=2, epochs=1, batch_size=8, max_length=64,
                           pool_settings={"model": str(tiny_bi_encoder_dir), "top_k": 20, "precision": "fp32"},
                           cache_dir=tmp_path / "cache").out_dir
    at = load_sample(new_session())
    open_page(at, MINE)
    at.radio(key="setting:teacher").set_value("cross-encoder").run()
    at.text_input(key="setting:teacher_model").input(str(folder)).run()
    with pytest.raises(ModelLoadError) as refused:
        refuse_other_kind(str(folder), str(folder), "cross-encoder")
    refusal = str(refused.value).replace("--teacher bi-encoder", "“Teacher kind: bi-encoder”").replace(
        "--teacher-model", "“Cross-encoder folder”").replace("--teacher-kind bi-encoder", "“Teacher kind: bi-encoder”")
    assert [unescaped(e.value) for e in at.error] == [refusal] and at.button(key="run_mine").disabled
    assert "--" not in refusal

    at.radio(key="setting:teacher").set_value("bi-encoder").run()
    at = mine(at, model=str(tiny_bi_encoder_dir), teacher_model=str(folder), max_seq_length=64, top_k=20)
    assert not at.error
    assert any(f"teacher: bi-encoder {folder}" in unescaped(m.value) for m in at.markdown)
    meta = at.session_state["mined"].pool.meta["teacher"]
    assert meta["cross_fit"]["folds"] == 2 and meta["cross_fit"]["rows_unseen"] == 0


def test_a_saved_pool_folder_opens_without_mining(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    from hnm_core.models.loading import load_bi_encoder
    from hnm_core.pool import PoolParams, build_pool, save_pool
    from hnm_core.teacher.scoring import TeacherParams, score_pool

    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    pool = build_pool(tiny_collection, PoolParams.from_settings({"top_k": 4}), encoder=encoder,
                      cache_dir=tmp_path / "cache")
    save_pool(score_pool(pool, TeacherParams.from_settings({}), model=encoder, cache_dir=tmp_path / "cache"),
              tmp_path / "pool")

    at = type_path(new_session(), tmp_path / "pool")
    at.button(key="load_pool").click().run()
    assert not at.exception and metrics(at)["Queries"] == "5"
    open_page(at, TUNE)
    assert label_rows(at)["positive"] == 6
    open_page(at, MINE)
    assert any("read from a saved pool folder" in m.value for m in at.markdown)


@pytest.mark.parametrize("raw, message", [
    (b"\xff\xfe", "cannot read it"),
    (b"[1, 2]", "no settings object"),
    (b'{"settings": {"skip_n": -3}}', "below the minimum"),
])
def test_a_bad_manifest_is_a_settings_error(raw, message):
    with pytest.raises(SettingsError, match=message):
        loaders.manifest_settings(raw)


def test_every_setting_of_the_table_has_a_widget(tiny_bi_encoder_dir):
    at = type_path(new_session(), SAMPLE)
    keys = widget_keys(at)
    at.button(key="load_path").click().run()
    tiny_mine(at, tiny_bi_encoder_dir)
    for page in (MINE, TUNE, REVIEW, EXPORT, TRAIN):
        keys |= widget_keys(open_page(at, page))
    assert {s.name for s in SETTINGS} == {k.split(":")[1] for k in keys if k.startswith("setting:")}


def test_settings_survive_a_visit_to_another_page(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    rules_off(open_page(at, TUNE))
    at.checkbox(key="setting:relative_margin:on").check().run()
    at.slider(key="setting:relative_margin").set_value(0.2).run()
    open_page(at, MINE)
    open_page(at, TUNE)
    assert at.checkbox(key="setting:near_dup:on").value is False
    assert at.slider(key="setting:relative_margin").value == 0.2
    assert at.session_state["settings"]["near_dup"] is None


def test_two_sessions_do_not_share_data_or_settings(tiny_bi_encoder_dir):
    skip_n = defaults()["skip_n"] + 2
    first = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(first, TUNE)
    first.slider(key="setting:skip_n").set_value(skip_n).run()
    assert first.session_state["settings"]["skip_n"] == skip_n

    second = new_session()
    for page in (EXPLORE, TUNE, EXPORT):
        assert "No data loaded yet" in open_page(second, page).info[0].value
    load_sample(second)
    open_page(second, MINE)
    assert second.text_input(key="setting:model").value == "all-MiniLM-L6-v2"
    assert second.number_input(key="setting:top_k").value == 100
    assert second.session_state["settings"]["skip_n"] == defaults()["skip_n"]
    assert first.session_state["settings"]["skip_n"] == skip_n


# --------------------------------------------------------------------------------------------------------------------
# Helpers the pages draw with


@pytest.mark.parametrize("elapsed, done, total, expected", [(10, 1, 4, "30 s"), (60, 1, 3, "2 min")])
def test_eta_is_the_mean_pace_times_what_is_left(elapsed, done, total, expected):
    from studio.progress import eta

    assert eta(elapsed, done, total) == expected


def test_progress_bars_one_per_stage_throttled_and_finished():
    def script() -> None:
        from studio.progress import StreamlitProgress

        report = StreamlitProgress(min_step=0.1)
        for done in range(1001):
            report("encode documents", done, 1000)
        report("bm25 index", 0, 0)

    at = AppTest.from_function(script, default_timeout=30).run()
    bars = at.get("progress")
    assert len(bars) == 2
    assert bars[0].proto.value == 100 and bars[0].proto.text == "encode documents: 1,000 / 1,000"
    assert bars[1].proto.value == 100


@pytest.mark.parametrize("text, expected", [
    ("<script>alert(1)</script> & co", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
    ('say "hi" <b>now</b>', 'say "hi" &lt;b&gt;now&lt;/b&gt;'),
    ("Ramón y Cajal, 5 μm", "Ramón y Cajal, 5 μm"),
])
def test_hover_text_never_renders_html(text, expected):
    assert escape.hover_text(text) == expected


def test_hover_text_is_wrapped_and_shortened():
    text = " ".join(["<tag>"] * 400)
    shown = escape.hover_text(text, width=40, limit=200)
    lines = shown.split("<br>")
    assert len(lines) > 3 and all(len(line.replace("&lt;", "<").replace("&gt;", ">")) <= 40 for line in lines)
    assert shown.endswith("…") and "<tag>" not in shown


def test_map_selection_maps_back_to_documents():
    # customdata as st.plotly_chart reports it: a kind's [id, score, reason, position], the corpus' bare position
    points = [{"curve_number": 1, "customdata": ["d8", "0.5", "hard band", "7"]}, {"curve_number": 0, "customdata": 1},
              {"curve_number": 2, "customdata": [-1]},  # the query's point is not a document
              {"curve_number": 3, "customdata": ["d8", "unscored", "moved by a verdict", "7"]},  # twice
              {"curve_number": 0, "point_index": 5}, {"x": 1.0}]
    assert figures.selected_docs(points) == [7, 1]


def test_map_figure_escapes_hover_text_zooms_and_thins_a_large_corpus(tiny_collection, tmp_path, monkeypatch):
    import dataclasses

    from hnm_core.curate.rules import CurateParams, curate
    from hnm_core.pool import PoolParams, build_pool

    texts = list(tiny_collection.doc_texts)
    texts[0] = "<img src=x onerror=alert(1)> " + texts[0]  # d01, a positive of q1
    collection = dataclasses.replace(tiny_collection, doc_texts=tuple(texts))
    pool = build_pool(collection, PoolParams.from_settings({"sources": ("bm25",), "top_k": 3}), cache_dir=tmp_path)
    curation = curate(pool.frame, CurateParams(ceiling=None, relative_margin=None, absolute_margin=None,
                                               near_dup=None, skip_n=0, cluster_rule=False, floor=None))
    coords = np.random.default_rng(0).normal(size=(len(collection.doc_ids) + len(collection.query_ids), 2))
    rows = tables.query_slices(pool.frame)["q1"]
    monkeypatch.setattr(figures, "_CORPUS_DRAW_LIMIT", 4)

    figure = figures.map_figure(coords, pool, curation, "q1", rows, zoom=True, highlight=[3, 3, 99])
    drawn = [t for t in figure.data if t.showlegend is not False]
    targets = [t for t in figure.data if t.showlegend is False]
    assert drawn[0].name == "rest of the corpus (4 of 12 drawn)" and len(drawn[0].x) == 4
    names = [t.name for t in drawn[1:]]
    # the query and its positives are drawn last, on top; the table's picks are ringed under them
    assert names == ["unscored by the teacher (3)", f"{figures.HIGHLIGHT_NAME} (1)", "labelled positive (2)", "query"]
    # over every drawn marker lies its click target, of one small size whatever the kind (the nearest point wins)
    assert list(figure.data[-len(targets):]) == targets
    assert [t.name for t in targets] == ["unscored by the teacher (3)", "labelled positive (2)", "query"]
    assert all(t.hoverinfo == "skip" for t in drawn[1:]) and {t.marker.size for t in targets} == \
        {figures.CLICK_TARGET_SIZE} and {t.marker.opacity for t in targets} == {0}
    assert [t.legendgroup for t in targets] == [t.legendgroup for t in drawn if t.legendgroup]
    unscored, positives, query = targets
    assert list(positives.x) == list(drawn[3].x) and positives.selected.marker.size == drawn[3].marker.size
    # each point's collection position is the last item of its customdata: d01 and d09 are positions 0 and 8
    assert sorted(positives.customdata[:, 3]) == ["0", "8"] and list(drawn[2].customdata) == [3]
    assert list(query.customdata) == [-1] and drawn[3].marker.size > drawn[1].marker.size
    hover = " ".join(positives.hovertext)
    assert "&lt;img src=x onerror=alert(1)&gt;" in hover and "<img" not in hover
    assert "%{customdata[2]}" in positives.hovertemplate
    assert [row[2] for row in positives.customdata] == ["labelled positive"] * 2
    assert {row[2] for row in unscored.customdata} == {"not scored by the teacher (no teacher has scored this pool)"}
    assert figure.layout.xaxis.range is not None


def test_map_hover_shows_each_ensemble_members_score(tiny_collection, tiny_bi_encoder_dir, tmp_path):
    from hnm_core.curate.rules import CurateParams, curate
    from hnm_core.models.loading import load_bi_encoder
    from hnm_core.pool import PoolParams, build_pool
    from hnm_core.teacher.scoring import TeacherParams, score_pool

    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    pool = build_pool(tiny_collection, PoolParams.from_settings({"top_k": 3}), encoder=encoder, cache_dir=tmp_path)
    pool = score_pool(pool, TeacherParams.from_settings({"teacher": "ensemble", "teacher_members": "dense,bm25"}))
    rows = tables.query_slices(pool.frame)["q1"]
    coords = np.zeros((len(tiny_collection.doc_ids) + len(tiny_collection.query_ids), 2))
    drawn = figures.map_figure(coords, pool, curate(pool.frame, CurateParams(skip_n=0)), "q1", rows)
    part = pool.frame.iloc[rows[0]:rows[1]]
    first = part.iloc[0]
    expected = (f"{first['teacher_score']:.3f} (dense {first['teacher_dense']:.3f} · "
                f"bm25 {first['teacher_bm25']:.3f})")
    shown = [row[1] for trace in drawn.data[1:] if np.ndim(trace.customdata) == 2 for row in trace.customdata]
    assert expected in shown and len(shown) == len(part)


def test_lasso_documents_carry_the_label_and_reason_of_the_candidate_table(tiny_collection, tmp_path):
    from hnm_core.curate.rules import CurateParams, curate
    from hnm_core.pool import PoolParams, build_pool

    pool = build_pool(tiny_collection, PoolParams.from_settings({"sources": ("bm25",), "top_k": 3}),
                      cache_dir=tmp_path)
    curation = curate(pool.frame, CurateParams(skip_n=2))
    rows = tables.query_slices(pool.frame)["q1"]
    candidates = tables.candidate_table(pool, curation, rows)
    assert candidates["label"].tolist()[:2] == ["positive", "positive"]
    assert candidates["reason"].tolist()[2] == "rank 1 in BM25 top-2 (skip-N 2)"
    in_pool = [tiny_collection.doc_index[d] for d in candidates["doc_id"]]
    outside = sorted(set(range(len(tiny_collection.doc_ids))) - set(in_pool))[0]
    shown = tables.documents_table(tiny_collection, [in_pool[2], outside, in_pool[0]], candidates)
    assert shown["label"].tolist() == ["skipped", "corpus", "positive"]
    assert shown["reason"].tolist() == ["rank 1 in BM25 top-2 (skip-N 2)", "not in this query's pool",
                                        "labelled positive"]
    assert tables.documents_table(tiny_collection, [outside], candidates)["label"].tolist() == ["corpus"]
    # scores and ranks travel with each document; a corpus document is unranked (0) and unscored (NaN)
    assert shown["bm25_rank"].tolist() == [candidates["bm25_rank"].iloc[2], 0, candidates["bm25_rank"].iloc[0]]
    assert np.isnan(shown["bm25_score"].iloc[1]) and shown["bm25_score"].iloc[0] == candidates["bm25_score"].iloc[2]
    card = tables.score_card(candidates.iloc[2]).set_index("measure")["value"]
    assert list(card.index) == list(tables.DETAIL_COLUMNS)
    assert (card["bm25_rank"], card["neg_rank"], card["teacher_score"], card["sources"]) == \
        ("1", "not ranked", "not computed", "bm25")


def test_the_candidates_table_is_grouped_by_label_then_ordered_by_teacher_score(tiny_collection,
                                                                               tiny_bi_encoder_dir, tmp_path):
    import dataclasses

    from hnm_core.curate.rules import CurateParams, curate
    from hnm_core.models.loading import load_bi_encoder
    from hnm_core.pool import PoolParams, build_pool

    encoder = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    pool = build_pool(tiny_collection, PoolParams.from_settings({"sources": ("dense",), "top_k": 9}),
                      encoder=encoder, cache_dir=tmp_path)
    # teacher scores that run against the pool's order (fused rank), so neither order is the other
    frame = pool.frame.assign(teacher_score=np.linspace(0.05, 0.95, len(pool.frame), dtype=np.float32))
    frame.loc[frame.index[-1], "teacher_score"] = np.nan
    pool = dataclasses.replace(pool, frame=frame)
    curation = curate(frame, CurateParams.from_settings({"ceiling": 0.25, "skip_n": 1, "negatives": 2,
                                                         "relative_margin": None, "absolute_margin": None,
                                                         "near_dup": None, "cluster_rule": False, "floor": None}))
    rows = tables.query_slices(frame)["q1"]
    table = tables.candidate_table(pool, curation, rows)
    groups = [tables.TABLE_ORDER.index(label) for label in table["label"]]
    assert groups == sorted(groups) and len(set(groups)) >= 4  # positives, selected, hard, flagged: in that order
    assert table["label"].iloc[0] == "positive" and "hard (selected)" in set(table["label"])
    for _, group in table.groupby("label", sort=False):
        scores = group["teacher_score"].to_numpy()
        assert (np.diff(scores[~np.isnan(scores)]) <= 0).all() and not np.isnan(scores[:-1]).any()
    unsorted = frame.iloc[rows[0]:rows[1]]["doc_id"].tolist()
    assert sorted(table["doc_id"]) == sorted(unsorted) and table["doc_id"].tolist() != unsorted


def test_each_kind_of_point_has_its_own_colour_and_marker():
    styles = list(figures.STYLES.values())
    assert len({s.color for s in styles}) == len(styles) and len({s.symbol for s in styles}) == len(styles)


# --------------------------------------------------------------------------------------------------------------------
# The demo with the real model


@pytest.mark.slow
def test_sample_demo_with_minilm_mine_explore_tune_export(tmp_path):
    at = load_sample(new_session(timeout=600))
    mine(at)  # every default: BM25 + packaged MiniLM, MiniLM as the teacher
    assert not at.error and any("candidates for 42 queries" in m.value for m in at.markdown)

    open_page(at, EXPLORE)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace["name"] for trace in chart["data"]]
    assert names[0] == "rest of the corpus" and names[-1] == "query"
    assert any(n.startswith("labelled positive") for n in names)
    assert any(n.startswith("hard negative (selected) (10)") for n in names)
    table = next(d.value for d in at.dataframe if "teacher_score" in d.value.columns)
    assert (table["label"] == "hard (selected)").sum() == 10
    first_query = at.selectbox(key="explore_query").value
    at.text_input(key="query_search").input("zebra crossing").run()
    assert not at.exception and "No query matches" in at.warning[0].value
    at.text_input(key="query_search").input("ransomware").run()
    chooser = at.selectbox(key="explore_query")
    assert chooser.value != first_query and "ransomware" in chooser.format_func(chooser.value).lower()

    rules_off(open_page(at, TUNE))
    before = label_rows(at)
    at.checkbox(key="setting:ceiling:on").check().run()
    started = time.perf_counter()
    at.slider(key="setting:ceiling").set_value(0.6).run()
    repaint = time.perf_counter() - started
    after = label_rows(at)
    assert after["false_negative"] > before["false_negative"]
    assert repaint < 1.0, f"a ceiling move took {repaint:.2f} s to rerun the Tune page"
    at.slider(key="setting:skip_n").set_value(2).run()
    assert label_rows(at)["skipped"] > 0

    open_page(at, EXPLORE)  # the map recolours from the same settings
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(trace["name"].startswith("skipped") for trace in chart["data"])

    open_page(at, EXPORT)
    at.text_input(key="export_dir").input(str(tmp_path / "demo")).run()
    at.button(key="export_write").click().run()
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["ceiling"] == 0.6 and manifest["settings"]["skip_n"] == 2
    assert manifest["model"]["name"] == "all-MiniLM-L6-v2"
    flag = [json.loads(line) for line in (tmp_path / "demo" / "flag.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(flag) == manifest["files"]["flag.jsonl"]["rows"] > 0
    assert all(np.max(r["neg_scores"]) <= 0.6 for r in flag)


def test_tune_audit_shows_the_sweep_and_applies_the_recommendation(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    rules_off(open_page(at, TUNE))
    at.button(key="run_audit").click().run()
    assert not at.exception and not at.error
    shown = metrics(at)
    assert {"Leak now", "Hidden caught", "Hardness", "Coverage"} <= set(shown)
    report = at.session_state["audit_report"][1]
    # with every rule off, the current position is the sweep's all-off row, whose figures the metric shows
    row = report.sweep.table.loc[report.sweep.row(report.params)]
    assert shown["Leak now"] == f"{row['leak_rate']:.1%}"
    recommended = report.sweep.recommend(target_leak=0.02).settings
    said = next(unescaped(m.value) for m in at.markdown if unescaped(m.value).startswith("Recommended:"))
    # the sliders' labels, not the settings' names; the hidden split's progress bars are gone once it is mined
    assert "Relative margin" in said and "relative_margin" not in said and "skip_n" not in said
    assert not at.get("progress")
    at.button(key="apply_audit").click().run()
    assert not at.exception
    for name, value in recommended.items():
        on = at.checkbox(key=f"setting:{name}:on") if name in ("ceiling", "relative_margin", "near_dup") else None
        if value is None and on is not None:
            assert not on.value
        elif name == "skip_n":
            assert at.slider(key="setting:skip_n").value == value
        elif name == "cluster_rule":
            assert at.toggle(key="setting:cluster_rule").value == value
        else:
            assert at.slider(key=f"setting:{name}").value == pytest.approx(value)


# --------------------------------------------------------------------------------------------------------------------
# Train


def test_train_page_offers_the_samples_splits_before_any_run():
    at = open_page(load_sample(new_session()), TRAIN)
    assert at.selectbox(key="setting:train_split").options == ["dev", "test", "train"]
    # only splits of other queries: the sample's test split holds the 28 train queries too
    assert at.selectbox(key="setting:test_split").options == ["dev"]
    assert at.selectbox(key="setting:test_split").value == "dev"
    assert at.number_input(key="setting:lr").format == "%.1e"  # 2e-5, not "0.00"
    assert at.multiselect(key="setting:arms").value == ["zero", "pairs", "naive", "hnm"]
    assert not at.get("plotly_chart")
    # the caption names what the arms are scored on: the split picked below, or the held-out share
    said = " ".join(c.value for c in at.caption)
    assert "scored on the same queries: the queries of the dev split" in said and "test split" not in said
    at.checkbox(key="setting:split_queries:on").check().run()
    said = " ".join(c.value for c in at.caption)
    assert "scored on the same queries: a seeded 50% of the train split's queries" in said
    # the time a proof will take, before it runs: hnm_core's estimate of these settings
    from hnm_core.prove.estimate import estimate_from_data

    expected = estimate_from_data(SAMPLE, at.session_state["settings"]).sentence()
    assert expected.startswith("About ") and expected in said
    # cross-fitted: every judged query scored once; the held-out share and the test split make way for it
    at.checkbox(key="setting:cross_fit:on").check().run()
    said = " ".join(c.value for c in at.caption)
    assert "a seeded 50%" not in said and "each of 2 seeded folds of the train split's judged queries in turn" in said
    assert at.session_state["settings"]["split_queries"] is None and at.session_state["settings"]["cross_fit"] == 2
    assert "setting:split_queries:on" not in {c.key for c in at.checkbox}
    crossed = estimate_from_data(SAMPLE, at.session_state["settings"])
    one_split = estimate_from_data(SAMPLE, {**at.session_state["settings"], "cross_fit": None})
    assert crossed.trainings == 2 * one_split.trainings and crossed.sentence() in said


def test_train_page_runs_a_tiny_proof_and_a_rerun_reuses_its_arms(tiny_bi_encoder_dir):
    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, TUNE).slider(key="setting:negatives").set_value(3).run()
    at.checkbox(key="setting:relative_margin:on").uncheck().run()  # the random model's scores would flag most rows
    open_page(at, TRAIN)
    at.selectbox(key="setting:test_split").set_value("dev").run()
    at.text_input(key="setting:train_model").input(str(tiny_bi_encoder_dir)).run()
    at.number_input(key="setting:train_batch_size").set_value(4).run()
    at.checkbox(key="setting:max_pairs:on").check().run()
    at.number_input(key="setting:max_pairs").set_value(8).run()
    # a variant: the Tune page's curation with skip-N 1, beside the hnm arm's (skip-N 0)
    open_page(at, TUNE).slider(key="setting:skip_n").set_value(1).run()
    open_page(at, TRAIN).text_input(key="variant_name").input("skip1").run()
    at.button(key="add_variant").click().run()
    assert any("skip1" in m.value and m.value.endswith("the current curation") for m in at.markdown)
    open_page(at, TUNE).slider(key="setting:skip_n").set_value(0).run()
    # and one with the relative margin on, measured from the positive margin_ref auto chooses
    at.checkbox(key="setting:relative_margin:on").check().run()
    open_page(at, TRAIN).text_input(key="variant_name").input("margin").run()
    at.button(key="add_variant").click().run()
    open_page(at, TUNE).checkbox(key="setting:relative_margin:on").uncheck().run()
    open_page(at, TRAIN)
    assert any("skip1" in m.value and m.value.endswith(r"but skip\_n 1") for m in at.markdown)
    at.button(key="run_proof").click().run()
    assert not at.exception and not at.error
    arms = ["zero", "pairs", "naive", "hnm", "skip1", "margin"]
    table = next(d.value for d in at.dataframe if "rows trained" in d.value.columns)
    assert list(table["arm"]) == arms and list(table["rows trained"])[:5] == [0, 8, 8, 8, 8]
    assert table["ndcg@10"].between(0, 1).all()
    chart = at.get("plotly_chart")[0]
    assert json.loads(chart.proto.spec)["data"][0]["x"] == arms
    paired = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert {("hnm", "naive"), ("skip1", "naive"), ("hnm", "pairs")} <= set(zip(paired["arm"], paired["against"]))
    assert (paired["95% low"] <= paired["difference"]).all() and (paired["difference"] <= paired["95% high"]).all()
    assert any("5 arm runs trained" in c.value for c in at.caption)
    assert not at.get("progress")  # the bars went once the proof was done: the tables are what it made
    # the margin variant says which positive auto measured it from; hnm and skip1 have no margin to measure
    said = [c.value.replace("\\", "") for c in at.caption if "Auto chose" in c.value]  # the page escapes markdown
    assert len(said) == 1 and said[0].startswith("margin: Auto chose the ")
    at.button(key="run_proof").click().run()
    assert any("0 arm runs trained" in c.value for c in at.caption)
    assert not at.warning
    # a proof stopped part-way (as Stop leaves prove.json) says what a second Run keeps
    from studio import folders

    saved = folders.proof_dir(at.session_state["data"].key) / "prove.json"
    saved.write_text(saved.read_text().replace('"stopped": false', '"stopped": true', 1))
    at.run()
    [warning] = at.warning
    assert "Run again to train only the rest; a training that was under way resumes from its last checkpoint " \
           "(one every 10 minutes)" in warning.value
