"""overrides: reading (one-line errors with file, line and fix), appending under a lock, `curate` applying the
verdicts as labels of their own, their reasons, the export (never a negative, optionally an extra positive, counted
in the manifest), `hnm curate` / `hnm mine --overrides` through the real entry point, and the audit's known false
negatives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hnm_core.audit import known_false_negatives
from hnm_core.cli import main
from hnm_core.curate.rules import curate
from hnm_core.errors import DataError
from hnm_core.export.formats import export
from hnm_core.curate.overrides import Override, add_override, default_path, read_overrides
from hnm_core.pool import save_pool
from hnm_core.curate.reasons import reasons

from .test_cli import SAMPLE, tiny_models  # noqa: F401  (a fixture)
from .test_export import PARAMS, make_pool, rows
from .test_curate import pool_frame

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pool():
    return make_pool(pool_frame(rows()))


def write(path: Path, *records: dict | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def verdict(q: str, d: str, v: str = "unlabelled_positive", note: str = "") -> dict:
    return {"query_id": q, "doc_id": d, "verdict": v, "note": note, "time": "2025-01-01T00:00:00+00:00"}


def pairs(table: pd.DataFrame, column: str) -> set[tuple[str, str]]:
    return set(zip(table["anchor"], table[column]))


# ---------------------------------------------------------------------------------------------------------------------
# The file


def test_the_last_verdict_on_a_pair_wins(pool, tmp_path):
    path = write(tmp_path / "o.jsonl", verdict("q1", "d5"), "", verdict("q2", "d8", "bad_negative"),
                 verdict("q1", "d5", "bad_negative", "off-topic after all"))
    found = read_overrides(path, pool.collection)
    assert found.lines == 3 and len(found) == 2 and found.path == path
    assert found.get("q1", "d5") == Override("q1", "d5", "bad_negative", "off-topic after all",
                                             "2025-01-01T00:00:00+00:00")
    assert found.get("q1", "d6") is None
    assert (found.count("bad_negative"), found.count("unlabelled_positive")) == (2, 0)


def test_a_cleared_line_withdraws_the_verdict_and_the_rules_label_the_candidate_again(pool, tmp_path):
    path = tmp_path / "o.jsonl"
    add_override(path, "q1", "d5", "unlabelled_positive", "answers it")
    add_override(path, "q2", "d8", "bad_negative")
    marked = curate(pool.frame, PARAMS, read_overrides(path, pool.collection))
    add_override(path, "q1", "d5", "cleared")
    found = read_overrides(path, pool.collection)
    assert found.lines == 3 and len(found) == 1 and found.get("q1", "d5") is None
    assert found.get("q2", "d8").verdict == "bad_negative"
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3  # the history stays in the file
    by_rules, withdrawn = curate(pool.frame, PARAMS), curate(pool.frame, PARAMS, found)
    row = pool.frame.index[(pool.frame["query_id"] == "q1") & (pool.frame["doc_id"] == "d5")][0]
    assert marked.labels[row] == "unlabelled_positive" and withdrawn.labels[row] == by_rules.labels[row]
    add_override(path, "q1", "d5", "bad_negative")  # a verdict after a withdrawal is in force again
    assert read_overrides(path, pool.collection).get("q1", "d5").verdict == "bad_negative"


@pytest.mark.parametrize("line, message", [
    ('{"query_id": "q1", "doc_id": "d5", "verdict": "unlabelled_pos', "not valid JSON (Unterminated string"),
    ('{"query_id": "q1", "doc_id": "d5", "verdict": "maybe"}', "unknown verdict 'maybe'"),
    ('{"query_id": "q9", "doc_id": "d5", "verdict": "bad_negative"}', "unknown query id 'q9'"),
    ('{"query_id": "q1", "doc_id": "d99", "verdict": "bad_negative"}', "unknown doc id 'd99'"),
    ('{"query_id": "q1", "verdict": "bad_negative"}', "doc_id is missing"),
    ('["q1", "d5"]', "a JSON list, not an object"),
    ('{"query_id": "q1", "doc_id": "d5", "verdict": "bad_negative", "note": 3}', "note is 3, not a string"),
])
def test_a_bad_line_is_named_with_its_file_line_and_fix(pool, tmp_path, line, message):
    path = write(tmp_path / "o.jsonl", verdict("q1", "d6"), line)
    with pytest.raises(DataError) as caught:
        read_overrides(path, pool.collection)
    text = str(caught.value)
    assert text.startswith(f"{path}:2: ") and message in text and "Fix:" in text and "\n" not in text


def test_a_truncated_line_says_where_it_breaks(tmp_path):
    path = write(tmp_path / "o.jsonl", '{"query_id": "q1", "doc_id": "d5", ')
    with pytest.raises(DataError, match=r"at column 36\)"):  # the end of the line, not column 1
        read_overrides(path)


def test_a_file_saved_with_a_byte_order_mark_is_read(pool, tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(verdict("q1", "d5")) + "\n").encode())  # Notepad's UTF-8
    assert read_overrides(path, pool.collection).get("q1", "d5").verdict == "unlabelled_positive"


SEPARATORS = "one\u2028two\u2029three\x85four"  # what str.splitlines() splits on besides \n, \r and escapes


def test_a_note_with_a_line_separator_reads_back_as_typed(pool, tmp_path):
    path = tmp_path / "o.jsonl"
    add_override(path, "q1", "d5", "bad_negative", note=SEPARATORS)
    add_override(path, "q2", "d8", "bad_negative", note="café")
    raw = path.read_text(encoding="utf-8")
    assert not set("\u2028\u2029\x85") & set(raw) and "café" in raw  # escaped; other text stays readable
    assert len(raw.splitlines()) == 2  # so any line-based tool sees two lines too
    found = read_overrides(path, pool.collection)
    assert found.get("q1", "d5").note == SEPARATORS and found.get("q2", "d8").note == "café"
    # a file written with the separators unescaped (JSON allows them in strings) is read as well
    path.write_text(json.dumps(verdict("q1", "d5", note=SEPARATORS), ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_overrides(path, pool.collection).get("q1", "d5").note == SEPARATORS


def test_a_missing_file_is_an_error_unless_it_is_the_default(tmp_path):
    with pytest.raises(DataError, match="no such overrides file"):
        read_overrides(tmp_path / "none.jsonl")
    assert len(read_overrides(default_path(tmp_path), missing_ok=True)) == 0


def test_appends_from_many_threads_keep_every_line(tmp_path):
    path = write(tmp_path / "o.jsonl", '{"query_id": "q0", "doc_id": "d0", "verdict": "bad_negative"}'.rstrip())
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # a hand edit without the final newline

    def mark(worker: int) -> None:
        for i in range(10):
            add_override(path, f"q{worker}", f"d{i}", "unlabelled_positive", note=f" w{worker} ")

    threads = [threading.Thread(target=mark, args=(w,)) for w in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = read_overrides(path)
    assert found.lines == 61 and len(found) == 61
    assert found.get("q3", "d7").note == "w3" and found.get("q0", "d0").verdict == "bad_negative"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_add_refuses_an_unknown_verdict(tmp_path):
    with pytest.raises(DataError, match="unknown verdict 'good'"):
        add_override(tmp_path / "o.jsonl", "q1", "d5", "good")  # type: ignore[arg-type]
    assert not (tmp_path / "o.jsonl").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Curate, reasons, export


def test_verdicts_are_labels_of_their_own_and_never_negatives(pool, tmp_path):
    plain = curate(pool.frame, PARAMS)
    ov = read_overrides(write(tmp_path / "o.jsonl", verdict("q1", "d5", note="answers it"),
                              verdict("q2", "d8", "bad_negative"), verdict("q1", "d1", "bad_negative")),
                        pool.collection)
    fixed = curate(pool.frame, PARAMS, ov)
    frame = pool.frame
    at = {(q, d): i for i, (q, d) in enumerate(zip(frame["query_id"], frame["doc_id"]))}
    assert plain.selected[at["q1", "d5"]] and plain.selected[at["q2", "d8"]]
    assert fixed.labels[at["q1", "d5"]] == "unlabelled_positive" and not fixed.selected[at["q1", "d5"]]
    assert fixed.labels[at["q2", "d8"]] == "bad_negative" and not fixed.selected[at["q2", "d8"]]
    assert fixed.labels[at["q1", "d1"]] == "positive"  # a labelled positive stays one
    # the quota is refilled from the rest of the hard band
    assert fixed.selected[at["q1", "d7"]] and fixed.count("unlabelled_positive") == 1
    why = reasons(frame, fixed)
    assert why[at["q1", "d5"]] == "corrected by you: unlabelled positive (answers it)"
    assert why[at["q2", "d8"]] == "corrected by you: bad negative"
    assert "You marked 1 unlabelled positive; never exported as negatives." in fixed.summary()
    assert not any("You marked" in line for line in plain.summary())


@pytest.mark.parametrize("extra", [False, True])
def test_export_leaves_them_out_of_the_negatives_and_counts_them(pool, tmp_path, extra):
    ov = read_overrides(write(tmp_path / "o.jsonl", verdict("q1", "d5"), verdict("q2", "d8", "bad_negative"),
                              verdict("q1", "d2", "unlabelled_positive")), pool.collection)
    done = export(pool, curate(pool.frame, PARAMS, ov), tmp_path / "out", extra_positives=extra,
                  formats="triplet,labeled_pair,pool")
    query, d5, d8 = (pool.collection.query_texts[0], pool.collection.doc_texts[4],
                     pool.collection.doc_texts[7])
    triplets = pd.read_parquet(done.out_dir / "triplet.parquet")
    assert (query, d5) not in pairs(triplets, "negative")
    assert (pool.collection.query_texts[1], d8) not in pairs(triplets, "negative")
    assert ((query, d5) in pairs(triplets, "positive")) == extra
    labeled = pd.read_parquet(done.out_dir / "labeled_pair.parquet")
    assert set(labeled.loc[labeled["positive"] == d5, "label"][labeled["anchor"] == query]) == ({1} if extra else set())
    labelled_pool = pd.read_parquet(done.out_dir / "pool.parquet")
    row = labelled_pool[(labelled_pool["query_id"] == "q1") & (labelled_pool["doc_id"] == "d5")].iloc[0]
    assert row["label"] == "unlabelled_positive" and not row["selected"]
    assert row["reason"] == "corrected by you: unlabelled positive"
    assert done.manifest["overrides"] == {"file": str(ov.path), "verdicts": 3, "unlabelled_positive": 1,
                                          "bad_negative": 1, "not_applied": 1, "exported_as_positives": int(extra)}
    assert done.manifest["settings"]["extra_positives"] is extra


def test_the_audit_counts_marked_positives_as_known_false_negatives(pool, tmp_path):
    params = PARAMS.__class__(**{**PARAMS.__dict__, "ceiling": 0.55})  # flags q1 d5 (0.6) and q2 d5 (0.7)
    curation = curate(pool.frame, params)
    ov = read_overrides(write(tmp_path / "o.jsonl", verdict("q1", "d5"), verdict("q1", "d6"),
                              verdict("q3", "d8", "bad_negative"), verdict("q4", "d2")), pool.collection)
    known = known_false_negatives(pool.frame, curation, ov)
    # q1 d5 caught by the ceiling, q1 d6 exported, q4 d2 not in the pool, the bad negative not counted
    assert (known.marked, known.in_pool, known.caught, known.exported) == (3, 2, 1, 1)
    assert "Known false negatives" in known.sentence()


# ---------------------------------------------------------------------------------------------------------------------
# CLI


def run_hnm(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hnm_core.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_hnm_curate_honours_overrides_and_the_file_beside_the_pool(pool, tmp_path):
    folder = save_pool(pool, tmp_path / "pool")
    flags = ["--negatives", "2", "--skip-n", "0", "--near-dup", "off", "--no-cluster-rule", "--quiet",
             "--formats", "triplet,pool"]
    given = write(tmp_path / "mine.jsonl", verdict("q1", "d5", note="answers it"))
    done = run_hnm("curate", str(folder), "--out", str(tmp_path / "a"), "--overrides", str(given), *flags)
    assert done.returncode == 0, done.stderr
    assert f"Applied 1 verdict of {given}." in done.stdout
    labelled = pd.read_parquet(tmp_path / "a" / "pool.parquet").set_index(["query_id", "doc_id"])
    assert labelled.loc[("q1", "d5"), "label"] == "unlabelled_positive"
    assert labelled.loc[("q1", "d5"), "reason"] == "corrected by you: unlabelled positive (answers it)"
    negatives = pd.read_parquet(tmp_path / "a" / "triplet.parquet")
    assert (pool.collection.query_texts[0], pool.collection.doc_texts[4]) not in pairs(negatives, "negative")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["overrides"]["unlabelled_positive"] == 1

    # without the flag, the file beside the pool applies; a bad line there fails with file:line and the fix
    add_override(default_path(folder), "q2", "d8", "bad_negative")
    assert main(["curate", str(folder), "--out", str(tmp_path / "b"), *flags]) == 0
    labelled = pd.read_parquet(tmp_path / "b" / "pool.parquet").set_index(["query_id", "doc_id"])
    assert labelled.loc[("q2", "d8"), "label"] == "bad_negative"
    assert labelled.loc[("q1", "d5"), "label"] == "hard"
    bad = write(tmp_path / "bad.jsonl", verdict("q1", "d5"), verdict("q1", "d5", "great"))
    done = run_hnm("curate", str(folder), "--out", str(tmp_path / "c"), "--overrides", str(bad), *flags)
    assert done.returncode == 2 and not (tmp_path / "c").exists()
    assert done.stderr.strip() == (f"hnm curate: error: {bad}:2: unknown verdict 'great'. Fix: use one of "
                                   "unlabelled_positive, bad_negative, confirmed_negative, cleared")


def test_hnm_mine_applies_overrides_and_keeps_them_beside_the_pool(tiny_models, tmp_path):  # noqa: F811
    flags = ["--sources", "bm25", "--top-k", "8", "--negatives", "3", "--skip-n", "0", "--formats", "triplet,pool",
             *tiny_models]
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "first"), *flags]) == 0
    first = pd.read_parquet(tmp_path / "first" / "pool.parquet")
    q, d = first.loc[first["selected"], ["query_id", "doc_id"]].iloc[0]
    given = write(tmp_path / "o.jsonl", verdict(q, d))
    out = tmp_path / "second"
    assert main(["mine", str(SAMPLE), "--out", str(out), "--overrides", str(given), *flags]) == 0
    second = pd.read_parquet(out / "pool.parquet").set_index(["query_id", "doc_id"])
    assert second.loc[(q, d), "label"] == "unlabelled_positive" and not second.loc[(q, d), "selected"]
    assert read_overrides(default_path(out / "pool")).get(q, d) is not None
    # a re-curation of the mined folder picks them up from beside its pool
    assert main(["curate", str(out), "--out", str(tmp_path / "again"), "--config", str(out / "manifest.json"),
                 "--quiet"]) == 0
    again = pd.read_parquet(tmp_path / "again" / "pool.parquet").set_index(["query_id", "doc_id"])
    assert again.loc[(q, d), "label"] == "unlabelled_positive"
    assert np.array_equal(again["selected"].to_numpy(), second["selected"].to_numpy())
    # an unknown id fails before any mining
    bad = write(tmp_path / "bad.jsonl", verdict("no-such-query", d))
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "bad"), "--overrides", str(bad), *flags]) == 2
    assert not (tmp_path / "bad").exists()


def test_hnm_audit_reports_known_false_negatives(tiny_models, tmp_path, capsys):  # noqa: F811
    from hnm_core.data import load_collection

    collection = load_collection(SAMPLE)
    q = collection.query_ids[0]
    given = write(tmp_path / "o.jsonl", *(verdict(q, d) for d in collection.doc_ids))  # every document of one query
    assert main(["audit", str(SAMPLE), "--out", str(tmp_path / "audit"), "--overrides", str(given), "--json",
                 "--sources", "bm25", "--top-k", "8", "--negatives", "3", "--skip-n", "0",
                 "--relative-margin", "off", *tiny_models]) == 0
    known = json.loads(capsys.readouterr().out)["known_false_negatives"]
    assert known["marked"] == len(collection.doc_ids)
    assert 8 <= known["in_pool"] <= 8 + len(collection.positives[q])  # its candidates, and any hidden positive
    assert known["exported"] == 3 and 0 <= known["caught"] <= known["in_pool"] - known["exported"]
