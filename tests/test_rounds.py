"""rounds: `hnm diff` / diff_rounds refuse exports mined from different collections unless told."""

from __future__ import annotations

import dataclasses

import pytest

from hnm_core.cli import main
from hnm_core.curate.rules import curate
from hnm_core.errors import DataError
from hnm_core.export.formats import export
from hnm_core.prove.rounds import RoundDiff, diff_rounds

from .test_export import PARAMS, make_pool, pool_frame, rows


@pytest.fixture
def two_collections(tmp_path):
    """Round A of the collection 'tiny' and round B of another collection that happens to share its ids."""
    frame = pool_frame(rows())
    tiny = make_pool(frame)
    other = dataclasses.replace(tiny, meta={**tiny.meta, "collection": {"name": "other", "source": "/data/other",
                                                                        "docs": 98120, "queries": 4}})
    export(tiny, curate(frame, PARAMS), tmp_path / "a", formats="pool")
    export(other, curate(frame, PARAMS), tmp_path / "b", formats="pool")
    return tmp_path / "a", tmp_path / "b"


def test_diff_refuses_rounds_of_different_collections(two_collections):
    a, b = two_collections
    with pytest.raises(DataError, match=r"different collections \(name 'tiny' vs 'other'; "
                                        r"source 'inline' vs '/data/other'\).*--allow-different-collections"):
        diff_rounds(a, b)
    # told: compared as before (the same pairs, so everything kept)
    diff = diff_rounds(a, b, allow_different_collections=True)
    assert diff.jaccard == 1.0 and diff.overlap == diff.a_selected > 0


def test_diff_of_one_collection_is_not_refused(two_collections):
    a, _ = two_collections
    assert diff_rounds(a, a).jaccard == 1.0


def test_diff_needs_the_manifest_to_tell_the_collection(two_collections):
    a, b = two_collections
    (b / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest.json"):
        diff_rounds(a, b)
    assert diff_rounds(a, b, allow_different_collections=True).jaccard == 1.0


def test_cli_diff_refuses_in_one_line_unless_told(two_collections, capsys):
    a, b = two_collections
    assert main(["diff", str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "different collections" in captured.err
    assert main(["diff", str(a), str(b), "--allow-different-collections"]) == 0
    assert "Round B kept" in capsys.readouterr().out


def test_round_sentences_agree_nouns_with_counts():
    one = RoundDiff(a_selected=1, b_selected=1, overlap=0, jaccard=0.0, a_now_easy=1, a_dropped=1, new_in_b=1,
                    transitions=())
    assert one.sentences() == [
        "Round B kept 0 of round A's 1 selected negative (Jaccard 0.00 over 1 and 1).",
        "1 of A's negatives is no longer selected in B; 1 of them is now labelled easy.",
        "B selected 1 negative that A had not.",
        "No candidate changed label.",
    ]


@pytest.mark.parametrize("flags", [[], ["--allow-different-collections"]])
@pytest.mark.parametrize("which", ["a", "b"])
def test_cli_diff_of_a_file_or_a_missing_folder_says_it_needs_an_export_folder(two_collections, capsys, which,
                                                                             flags):
    a, b = two_collections
    qrels = a.parent / "qrels.tsv"
    qrels.write_text("q1\td1\t1\n")
    for wrong, what in ((qrels, "is a file"), (a.parent / "gone", "does not exist")):
        args = [wrong, b] if which == "a" else [a, wrong]
        assert main(["diff", *map(str, args), *flags]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "Traceback" not in captured.err
        assert captured.err.strip().splitlines() == [
            f"hnm diff: error: {wrong}: {what}; hnm diff compares two export folders. Fix: pass the --out folders "
            "of two hnm mine / hnm curate runs (exported with the 'pool' format)"]
