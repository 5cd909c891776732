"""Tests for hnm_core/data.py: every reader on tiny inline files, every bad input, and the real BEIR collections."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hnm_core.data import (
    Collection,
    beir_splits,
    load_beir,
    load_collection,
    load_flag,
    load_pairs,
    normalize_text,
    text_id,
)
from hnm_core.errors import DataError
from hnm_core.wording import counted

from .conftest import shared_dataset


Files = dict[str, "str | bytes | list[dict[str, Any]] | pd.DataFrame"]


def write(root: Path, files: Files) -> None:
    """Write each value: text, raw bytes, records as JSON lines, or a frame as Parquet."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pd.DataFrame):
            content.to_parquet(path, index=False)
        elif isinstance(content, list):
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in content), encoding="utf-8")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


CORPUS = [
    {"_id": "d1", "title": "BM25", "text": "A ranking function."},
    {"_id": "d2", "title": "", "text": "Dense retrieval uses embeddings."},
    {"_id": "d3", "title": "Hard negatives", "text": "  Mined from a pool. "},
    {"_id": "d4", "text": "No title field at all."},
]
QUERIES = [
    {"_id": "q1", "text": "what is bm25"},
    {"_id": "q2", "text": "how are hard negatives mined"},
    {"_id": "q3", "text": "a query without judgements"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\nq2\td2\t1\nq2\td4\t0\n"


def beir_folder(root: Path, **overrides: Any) -> Path:
    files: Files = {"corpus.jsonl": CORPUS, "queries.jsonl": QUERIES, "qrels.tsv": QRELS}
    files.update(overrides)
    write(root, {k: v for k, v in files.items() if v is not None})
    return root


# ---------------------------------------------------------------------------------------------------------------------
# ids


@pytest.mark.parametrize("variant", ["What is BM25?", "  what   is bm25? ", "WHAT IS BM25?\n", "What\u00a0is\tBM25?"])
def test_text_id_is_stable_across_case_and_whitespace(variant: str) -> None:
    # A literal, not a recomputation: ids written by an earlier version must still match.
    assert text_id(variant, "q") == "qc6dc230d3282e7b8"
    assert text_id(variant, "d") == "dc6dc230d3282e7b8"
    assert normalize_text(variant) == "what is bm25?"


def test_text_id_differs_for_different_texts() -> None:
    assert text_id("what is bm25?", "q") != text_id("what is bm25", "q")


# ---------------------------------------------------------------------------------------------------------------------
# BEIR


def test_load_beir_reads_texts_positives_and_drops_unjudged_queries(tmp_path: Path) -> None:
    collection = load_beir(beir_folder(tmp_path))

    assert collection.doc_ids == ("d1", "d2", "d3", "d4")
    # title + " " + text, stripped, as BEIR builds passages
    assert collection.doc_texts == ("BM25 A ranking function.", "Dense retrieval uses embeddings.",
                                    "Hard negatives   Mined from a pool.", "No title field at all.")
    assert collection.query_ids == ("q1", "q2")  # q3 has no qrels
    assert collection.query_texts == ("what is bm25", "how are hard negatives mined")
    assert collection.positives == {"q1": ("d1",), "q2": ("d3", "d2")}  # file order; score 0 is not a positive
    assert collection.negatives == {}
    assert collection.name == tmp_path.name
    assert collection.source == f"BEIR folder {tmp_path.resolve()}, split test"
    assert collection.problems == ("qrels.tsv: 1 row with score <= 0 ignored (not positives).",
                                   "qrels.tsv: no positive (score > 0) for 1 query of queries.jsonl (q3); left out "
                                   "(queries of other splits, or unlabelled).")


def test_indexes_map_ids_to_positions_and_are_cached(tmp_path: Path) -> None:
    collection = load_beir(beir_folder(tmp_path))
    assert collection.doc_index == {"d1": 0, "d2": 1, "d3": 2, "d4": 3}
    assert collection.query_index == {"q1": 0, "q2": 1}
    assert collection.query_index is collection.query_index

    built = Collection("x", ("a", "b"), ("A", "B"), ("q",), ("Q",), {"q": ("b",)})
    assert built.doc_index == {"a": 0, "b": 1}
    assert built.doc_index is built.doc_index


def test_load_beir_skips_and_reports_what_it_cannot_use(tmp_path: Path) -> None:
    corpus = CORPUS + [
        {"_id": "d5", "title": "", "text": "   "},  # empty: skipped
        {"_id": "d1", "title": "BM25", "text": "A ranking function."},  # same id, same text: kept once
    ]
    queries = QUERIES + [{"_id": "q4", "text": "only unknown docs"}, {"_id": "q5", "text": ""}]
    qrels = ("q1\td1\t1\n"  # no header: allowed
             "q1\td9\t1\n" "q2\td3\t1\n" "q2\td8\t1\n" "q2\td9\t1\n"  # three rows name unknown docs
             "q7\td1\t1\n"  # unknown query
             "q4\td9\t1\n"  # q4 loses its only positive
             "q1\td5\t1\n"  # names the empty document
             "q5\td1\t1\n"  # names the empty query
             "q1\td1\t2\n")  # repeated pair
    collection = load_beir(beir_folder(tmp_path, **{"corpus.jsonl": corpus, "queries.jsonl": queries,
                                                    "qrels.tsv": qrels}))

    assert collection.doc_ids == ("d1", "d2", "d3", "d4")
    assert collection.query_ids == ("q1", "q2")
    assert collection.positives == {"q1": ("d1",), "q2": ("d3",)}
    assert collection.problems == (
        "corpus.jsonl: 1 document with empty text skipped (d5 on line 5).",
        "corpus.jsonl: 1 line repeated a document's _id and text (d1 on line 6); kept one.",
        "queries.jsonl: 1 query with empty text skipped (q5 on line 5).",
        "qrels.tsv: 1 row names unknown query ids (not in queries.jsonl) (q7 on line 6); skipped.",
        "qrels.tsv: 4 rows name unknown doc ids (not in corpus.jsonl) (e.g. d9 on line 2, d8 on line 4, "
        "d9 on line 5); skipped.",
        "qrels.tsv: 2 rows name a query or document skipped as empty (d5 on line 8, q5 on line 9); skipped.",
        "qrels.tsv: 1 row repeated a (query, document) pair (q1/d1 on line 10); kept one.",
        "qrels.tsv: 1 query lost every positive to the skips above; dropped.",
        "qrels.tsv: no positive (score > 0) for 1 query of queries.jsonl (q3); left out (queries of other splits, "
        "or unlabelled).",
    )


@pytest.mark.parametrize(
    ("qrels_file", "split"),
    [
        ("qrels/test.tsv", "test"),
        ("qrels_test.tsv", "test"),
        ("qrels.tsv", "test"),
        ("qrels/train.tsv", "train"),
        ("qrels_train.tsv", "train"),
        ("qrels_dev.tsv", "dev"),
    ],
)
@pytest.mark.parametrize("header", [True, False])
def test_load_beir_finds_each_qrels_layout(tmp_path: Path, qrels_file: str, split: str, header: bool) -> None:
    qrels = ("query-id\tcorpus-id\tscore\n" if header else "") + "q2\td2\t1\nq1\td4\t3\n"
    folder = beir_folder(tmp_path, **{"qrels.tsv": None, qrels_file: qrels})
    assert beir_splits(folder) == {split: folder / qrels_file}
    collection = load_collection(folder, split=split)
    assert collection.query_ids == ("q1", "q2")  # queries.jsonl order
    assert collection.positives == {"q2": ("d2",), "q1": ("d4",)}
    assert collection.problems == (f"{Path(qrels_file).name}: no positive (score > 0) for 1 query of queries.jsonl "
                                   "(q3); left out (queries of other splits, or unlabelled).",)


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore", "qid\tdocid\trel", "query_id corpus_id relevance",
                                    "Query-ID\tDoc-ID\tLabel", "qid iter docno rel"])
def test_a_qrels_header_is_known_by_its_names_wherever_it_is(tmp_path: Path, header: str) -> None:
    # a second header in the middle: two qrels files concatenated
    rows = "q2 0 d2 1\n" if header.count(" ") == 3 else "q2\td2\t1\n"
    qrels = f"{header}\n{rows}{header}\n" + rows.replace("q2", "q1").replace("d2", "d4")
    collection = load_beir(beir_folder(tmp_path, **{"qrels.tsv": qrels}))
    assert collection.positives == {"q1": ("d4",), "q2": ("d2",)}


def test_a_headerless_qrels_keeps_its_first_row(tmp_path: Path) -> None:
    # The first row used to be dropped as a header whenever its score did not parse; a numeric one never was, and
    # a word in the score column is now an error on that line (BAD_INPUTS), not a lost judgement.
    collection = load_beir(beir_folder(tmp_path, **{"qrels.tsv": "q2\td2\t1\nq1\td4\t1\n"}))
    assert collection.positives == {"q1": ("d4",), "q2": ("d2",)}


@pytest.mark.parametrize("qrels", [
    # a fourth column (an annotator id) named by the header: TREC's reading took it for the score, "1" for the document
    "query-id\tcorpus-id\tscore\tannotator\nq1\td1\t1\t7\nq2\td3\t2\t7\nq2\td2\t1\t8\nq2\td4\t0\t7\n",
    "query-id\tcorpus-id\tscore\tlabel\nq1\td1\t1\t1\nq2\td3\t2\t1\nq2\td2\t1\t1\nq2\td4\t0\t1\n",
    # TREC without a header: the second column is the constant iteration
    "q1 0 d1 1\nq2 0 d3 2\nq2 0 d2 1\nq2 0 d4 0\n",
    "q1\tQ0\td1\t1\nq2\tQ0\td3\t2\nq2\tQ0\td2\t1\n",
    # rows ending in a tab, with or without a header (score '' is not a number, it was)
    "query-id\tcorpus-id\tscore\t\nq1\td1\t1\t\nq2\td3\t2\t\nq2\td2\t1\t\n",
    "q1\td1\t1\t\nq2\td3\t2\t\t\nq2\td2\t1\n",
], ids=["annotator-header", "label-header", "trec-0", "trec-q0", "trailing-tab-header", "trailing-tab"])
def test_qrels_columns_are_read_by_the_header_or_the_trec_layout(tmp_path: Path, qrels: str) -> None:
    collection = load_beir(beir_folder(tmp_path, **{"qrels.tsv": qrels}))
    assert collection.positives == {"q1": ("d1",), "q2": ("d3", "d2")}


def test_queries_without_a_positive_are_counted(tmp_path: Path) -> None:
    queries = QUERIES + [{"_id": f"x{i}", "text": f"unjudged {i}"} for i in range(4)]
    collection = load_beir(beir_folder(tmp_path, **{"queries.jsonl": queries}))
    assert collection.query_ids == ("q1", "q2")
    # q3 and the x's have no row; the zero-score row of q2 does not make q2 judged-without-positive (it has others)
    assert collection.problems[-1] == ("qrels.tsv: no positive (score > 0) for 5 queries of queries.jsonl "
                                       "(e.g. q3, x0, x1); left out (queries of other splits, or unlabelled).")


def test_official_qrels_folder_wins_over_flat_files(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path, **{"qrels/test.tsv": "q1\td2\t1\n", "qrels_test.tsv": "q1\td3\t1\n"})
    assert load_beir(folder).positives == {"q1": ("d2",)}


def test_unknown_split_lists_the_splits_that_exist(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path, **{"qrels_train.tsv": "q1\td1\t1\n"})
    with pytest.raises(DataError, match=r"no qrels for split 'dev'; splits found: test, train\. Fix:"):
        load_beir(folder, split="dev")


def test_a_folder_without_qrels_names_where_the_labels_go(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path, **{"qrels.tsv": None})
    with pytest.raises(DataError) as refused:
        load_beir(folder, split="train")
    message = str(refused.value)
    assert "has no qrels file" in message and "pick one of the splits" not in message
    assert "qrels/<split>.tsv or qrels_<split>.tsv" in message and "qrels.tsv is the test split" in message


def test_beir_accepts_numeric_ids_and_trec_qrels(tmp_path: Path) -> None:
    corpus = [{"_id": 10, "title": "", "text": "ten"}, {"_id": 11, "title": "", "text": "eleven"}]
    folder = beir_folder(tmp_path, **{"corpus.jsonl": corpus, "queries.jsonl": [{"_id": 1, "text": "which"}],
                                      "qrels.tsv": "1 0 11 1\n1 0 10 0\n"})  # TREC: qid iter docid rel
    collection = load_beir(folder)
    assert collection.doc_ids == ("10", "11")
    assert collection.positives == {"1": ("11",)}


# ---------------------------------------------------------------------------------------------------------------------
# Pairs files

PAIRS = [
    ("What is BM25?", "A ranking function, \"Okapi\"\tstyle."),
    ("what is  bm25?", "A second positive: café ☕."),  # same query after normalisation
    ("How are negatives mined?", "From a candidate pool."),
    ("HOW ARE NEGATIVES MINED?", "from a candidate  POOL."),  # the same pair again
]


def pairs_file(root: Path, suffix: str, rows: list[tuple[str, str]], columns: tuple[str, str] = ("query", "positive")
               ) -> Path:
    frame = pd.DataFrame(rows, columns=list(columns))
    path = root / f"pairs{suffix}"
    if suffix == ".jsonl":
        write(root, {path.name: frame.to_dict("records")})
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict("records"), indent=2), encoding="utf-8")
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet"])
def test_load_pairs_every_format(tmp_path: Path, suffix: str) -> None:
    path = pairs_file(tmp_path, suffix, PAIRS)
    collection = load_collection(path)
    q1, q2 = text_id("what is bm25?", "q"), text_id("how are negatives mined?", "q")
    d1, d2, d3 = (text_id(t, "d") for t in (PAIRS[0][1], PAIRS[1][1], PAIRS[2][1]))

    assert collection.query_ids == (q1, q2)
    assert collection.query_texts == ("What is BM25?", "How are negatives mined?")  # first spelling seen
    assert collection.positives == {q1: (d1, d2), q2: (d3,)}
    assert collection.doc_ids == (d1, d2, d3)
    assert collection.doc_texts == (PAIRS[0][1], PAIRS[1][1], PAIRS[2][1])
    assert collection.problems == (
        f"pairs{suffix}: 1 row repeated a (query, positive) pair (after normalising case and spaces); kept one.",)
    assert collection.name == "pairs"
    assert collection.source == f"pairs file {path.resolve()}"


@pytest.mark.parametrize("columns", [("anchor", "positive"), ("question", "answer"), ("sentence1", "sentence2"),
                                     ("q", "text"), ("Query", "Passage"), ("query", "document"), ("query", "pos")])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_pairs_columns_are_detected(tmp_path: Path, columns: tuple[str, str], suffix: str) -> None:
    collection = load_pairs(pairs_file(tmp_path, suffix, PAIRS[2:3], columns))
    assert collection.query_texts == ("How are negatives mined?",)
    assert collection.doc_texts == ("From a candidate pool.",)


def test_pairs_columns_can_be_named(tmp_path: Path) -> None:
    path = pairs_file(tmp_path, ".csv", PAIRS[:1], ("claim", "evidence"))
    with pytest.raises(DataError, match=r"found no query column; columns found: 'claim', 'evidence'\. Fix: rename"):
        load_pairs(path)
    collection = load_pairs(path, query_column="claim", positive_column="evidence")
    assert collection.query_texts == ("What is BM25?",)
    with pytest.raises(DataError, match=r"has no positive column 'proof'; columns found: 'claim', 'evidence'"):
        load_pairs(path, query_column="claim", positive_column="proof")


TRIPLETS = pd.DataFrame({
    "anchor": ["What is BM25?", "what is bm25?", "How are negatives mined?"],
    "positive": ["A ranking function.", "Okapi BM25.", "From a pool."],
    "negative": ["A cat.", "okapi bm25.", "A ranking function."],  # row 2: its own query's positive
})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_triplet_negatives_become_given_negatives(tmp_path: Path, suffix: str) -> None:
    path = pairs_file(tmp_path, suffix, list(TRIPLETS.itertuples(index=False)), tuple(TRIPLETS.columns))
    collection = load_collection(path)
    q_bm25, q_mined = text_id("what is bm25?", "q"), text_id("how are negatives mined?", "q")
    assert collection.positives == {q_bm25: (text_id("A ranking function.", "d"), text_id("Okapi BM25.", "d")),
                                    q_mined: (text_id("From a pool.", "d"),)}
    # as FlagEmbedding "neg": kept per query, minus any equal to one of the same query's positives
    assert collection.negatives == {q_bm25: (text_id("A cat.", "d"),),
                                    q_mined: (text_id("A ranking function.", "d"),)}
    assert "A cat." in collection.doc_texts
    assert collection.problems == (f"pairs{suffix}: 1 negative equal to a positive of the same query dropped from "
                                   "its negatives.",)


LABELLED = pd.DataFrame({
    "anchor": ["What is BM25?", "What is BM25?", "How are negatives mined?", "Only negatives?"],
    "positive": ["A ranking function.", "A cat.", "From a pool.", "A dog."],
    "label": [1, 0, 1, 0],
})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_labelled_pairs_with_label_0_are_negatives_not_positives(tmp_path: Path, suffix: str) -> None:
    # sentence-transformers' labeled-pair format, as hnm's own `labeled_pair` export writes it
    path = pairs_file(tmp_path, suffix, list(LABELLED.itertuples(index=False)), tuple(LABELLED.columns))
    collection = load_collection(path)
    q_bm25, q_mined = text_id("What is BM25?", "q"), text_id("How are negatives mined?", "q")
    assert collection.positives == {q_bm25: (text_id("A ranking function.", "d"),),
                                    q_mined: (text_id("From a pool.", "d"),)}
    assert collection.negatives == {q_bm25: (text_id("A cat.", "d"),)}
    assert collection.problems == (f"pairs{suffix}: 1 query with only negative rows (label 0) left out.",)


def test_a_label_that_is_not_a_number_is_refused_on_its_line(tmp_path: Path) -> None:
    write(tmp_path, {"l.jsonl": [{"anchor": "a", "positive": "p", "label": 1},
                                 {"anchor": "b", "positive": "q", "label": "relevant"}]})
    with pytest.raises(DataError, match=r"l.jsonl:2: the 'label' of this row is 'relevant', not a number"):
        load_pairs(tmp_path / "l.jsonl")


def test_ntuple_negative_columns_and_lists_are_all_read(tmp_path: Path) -> None:
    write(tmp_path, {
        "n.jsonl": [{"anchor": "a", "positive": "p", "negative_1": "n1", "negative_2": "n2", "negative_3": None},
                    {"anchor": "b", "positive": "p", "negative_1": " ", "negative_2": "n1"}],
        "l.jsonl": [{"query": "a", "positive": "p", "negatives": ["n1", "n2"]}],
        "l.parquet": pd.DataFrame({"query": ["a"], "positive": ["p"], "hard_negatives": [["n1", "n2"]]}),
    })
    n1, n2 = text_id("n1", "d"), text_id("n2", "d")
    ntuple = load_pairs(tmp_path / "n.jsonl")
    assert ntuple.negatives == {text_id("a", "q"): (n1, n2), text_id("b", "q"): (n1,)}
    # null, blank, and the absent negative_3 of the second row (the first record's keys are the columns)
    assert ntuple.problems == ("n.jsonl: 3 empty negatives skipped.",)
    for name in ("l.jsonl", "l.parquet"):
        assert load_pairs(tmp_path / name).negatives == {text_id("a", "q"): (n1, n2)}


def test_parquet_categorical_columns_read_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({"query": ["a", "a", "b"], "positive": ["x", "y", "x"]}).astype("category")
    write(tmp_path, {"p.parquet": frame})
    collection = load_pairs(tmp_path / "p.parquet")
    assert collection.query_texts == ("a", "b")
    assert collection.positives[text_id("a", "q")] == (text_id("x", "d"), text_id("y", "d"))


def test_ids_are_the_same_across_runs_and_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_pairs(pairs_file(tmp_path / "a", ".jsonl", [("What is BM25?", "A ranking function.")]))
    again = load_pairs(pairs_file(tmp_path / "a", ".jsonl", [("What is BM25?", "A ranking function.")]))
    varied = load_pairs(pairs_file(tmp_path / "b", ".csv", [(" what is  BM25? ", "a RANKING\nfunction.")]))
    assert first.query_ids == again.query_ids == varied.query_ids == ("qc6dc230d3282e7b8",)
    assert first.doc_ids == again.doc_ids == varied.doc_ids


# ---------------------------------------------------------------------------------------------------------------------
# FlagEmbedding

FLAG = [
    {"query": "what is bm25", "pos": ["A ranking function."], "neg": ["Dense retrieval.", "A cat.", ""],
     "pos_scores": [1.0], "neg_scores": [0.2, 0.1, 0.0], "prompt": "Represent this query: "},
    {"query": "what is dense retrieval", "pos": ["dense retrieval."], "neg": ["a ranking function."]},
    {"query": "What is BM25", "pos": ["Okapi BM25."], "neg": ["A ranking function.", "A dog."]},
    {"query": "no negatives given", "pos": ["A cat."]},
]


def test_load_flag_dedupes_corpus_and_keeps_negatives(tmp_path: Path) -> None:
    write(tmp_path, {"train.jsonl": FLAG})
    collection = load_collection(tmp_path / "train.jsonl")
    d = {t: text_id(t, "d") for t in ("A ranking function.", "Dense retrieval.", "A cat.", "Okapi BM25.", "A dog.")}
    q_bm25, q_dense, q_none = (text_id(t, "q")
                               for t in ("what is bm25", "what is dense retrieval", "no negatives given"))

    assert collection.doc_ids == tuple(d.values())  # first-seen order, pos and neg pooled, deduplicated
    assert collection.doc_texts == tuple(d)
    assert collection.query_ids == (q_bm25, q_dense, q_none)
    assert collection.positives == {q_bm25: (d["A ranking function."], d["Okapi BM25."]),
                                    q_dense: (d["Dense retrieval."],), q_none: (d["A cat."],)}
    # line 3 repeats the bm25 query: its negatives merge, and "A ranking function." (a positive of it) is dropped
    assert collection.negatives == {q_bm25: (d["Dense retrieval."], d["A cat."], d["A dog."]),
                                    q_dense: (d["A ranking function."],)}
    assert collection.problems == (
        "train.jsonl: 1 empty negative skipped.",
        "train.jsonl: 1 negative equal to a positive of the same query dropped from its negatives.",
    )
    assert collection.source.startswith("FlagEmbedding file ")
    assert load_flag(tmp_path / "train.jsonl") == collection


@pytest.mark.parametrize(
    ("files", "target", "source"),
    [
        ({"corpus.jsonl": CORPUS, "queries.jsonl": QUERIES, "qrels.tsv": QRELS}, ".", "BEIR folder"),
        ({"x.jsonl": FLAG}, "x.jsonl", "FlagEmbedding file"),
        ({"x.jsonl": [{"query": "a", "positive": "b"}]}, "x.jsonl", "pairs file"),
        ({"x.json": '[{"query": "a", "pos": ["b"]}]'}, "x.json", "FlagEmbedding file"),
        ({"x.csv": "query,pos\na,b\n"}, "x.csv", "pairs file"),
    ],
)
def test_load_collection_dispatches_on_what_path_is(tmp_path: Path, files: Files, target: str, source: str) -> None:
    write(tmp_path, files)
    assert load_collection(tmp_path / target).source.startswith(source)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: every error names the file, the line (or record/row) and a fix, on one line

LATIN1 = "query,positive\nwhat,ok\ncaf\xe9,bad\n".encode("latin-1")
BAD_INPUTS = [
    # (id, files, what to load, expected "file:line" or "file: record N", fragment of the message)
    ("corpus-bad-json", {"corpus.jsonl": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'}, ".",
     "corpus.jsonl:2", "invalid JSON"),
    ("corpus-missing-text", {"corpus.jsonl": [{"_id": "d1", "text": "a"}, {"_id": "d2", "title": "t"}]}, ".",
     "corpus.jsonl:2", "no 'text' field"),
    ("corpus-missing-id", {"corpus.jsonl": [{"text": "a"}]}, ".", "corpus.jsonl:1", "no _id field"),
    ("corpus-text-not-str", {"corpus.jsonl": [{"_id": "d1", "text": ["a"]}]}, ".", "corpus.jsonl:1",
     "'text' is list, not text"),
    ("corpus-id-conflict", {"corpus.jsonl": CORPUS[:2] + [{"_id": "d1", "text": "other"}]}, ".", "corpus.jsonl:3",
     "_id 'd1' repeated with different text (first on line 1)"),
    ("corpus-not-utf8", {"corpus.jsonl": b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "caf\xe9"}\n'}, ".",
     "corpus.jsonl:2", "iconv -f latin1 -t utf-8"),
    ("corpus-not-object", {"corpus.jsonl": '["d1", "a"]\n'}, ".", "corpus.jsonl:1", "expected a JSON object"),
    ("corpus-empty-file", {"corpus.jsonl": "\n\n"}, ".", "corpus.jsonl: ", "the file is empty"),
    ("corpus-all-empty", {"corpus.jsonl": [{"_id": "d1", "text": " "}]}, ".", "corpus.jsonl: ",
     "every document has empty text"),
    ("queries-bad-json", {"queries.jsonl": "{'_id': 'q1'}\n"}, ".", "queries.jsonl:1", "invalid JSON"),
    ("queries-id-conflict", {"queries.jsonl": QUERIES + [{"_id": "q1", "text": "else"}]}, ".", "queries.jsonl:4",
     "repeated with different text (first on line 1)"),
    ("qrels-few-columns", {"qrels.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\n"}, ".", "qrels.tsv:3",
     "expected 3 columns"),
    ("qrels-bad-score", {"qrels.tsv": "q1\td1\t1\nq2\td2\thigh\n"}, ".", "qrels.tsv:2", "score 'high' is not a number"),
    ("qrels-empty-file", {"qrels.tsv": ""}, ".", "qrels.tsv: ", "the file is empty"),
    ("qrels-nothing-to-mine", {"qrels.tsv": "q1\td9\t1\nq9\td1\t1\nq2\td2\t0\n"}, ".", "qrels.tsv: ",
     "nothing to mine"),
    ("folder-without-corpus", {"corpus.jsonl": None}, ".", "",
     "has no corpus.jsonl (found: qrels.tsv, queries.jsonl)"),
    ("pairs-empty-query", {"p.jsonl": [{"query": "a", "positive": "b"}, {"query": " ", "positive": "c"}]}, "p.jsonl",
     "p.jsonl:2", "empty query in column 'query'"),
    ("pairs-empty-positive", {"p.jsonl": [{"query": "a", "positive": "b"}, {"query": "c", "positive": ""}]},
     "p.jsonl", "p.jsonl:2", "empty positive"),
    ("pairs-missing-positive", {"p.jsonl": [{"query": "a", "positive": "b"}, {"query": "c"}]}, "p.jsonl",
     "p.jsonl:2", "no positive (column 'positive' is missing or null)"),
    ("pairs-query-not-text", {"p.jsonl": [{"query": 7, "positive": "b"}]}, "p.jsonl", "p.jsonl:1",
     "the query in 'query' is int, not text"),
    ("pairs-bad-json", {"p.jsonl": '{"query": "a", "positive": "b"}\n\n{"query": "a" "positive": "b"}\n'},
     "p.jsonl", "p.jsonl:3", "invalid JSON"),
    ("pairs-empty-jsonl", {"p.jsonl": ""}, "p.jsonl", "p.jsonl: ", "the file is empty"),
    ("pairs-unknown-columns", {"p.jsonl": [{"claim": "a", "evidence": "b"}]}, "p.jsonl", "p.jsonl:1: ",
     "found no query column; columns found: 'claim', 'evidence'"),
    ("pairs-beir-file", {"c.jsonl": CORPUS}, "c.jsonl", "c.jsonl:1: ", "looks like a BEIR corpus"),
    ("csv-not-utf8", {"p.csv": LATIN1}, "p.csv", "p.csv:3", "re-save the file as UTF-8"),
    ("csv-field-count", {"p.csv": "query,positive\na,b\nc,d,e\n"}, "p.csv", "p.csv:3",
     "row has 3 fields but the header has 2"),
    ("csv-empty-positive", {"p.csv": 'query,positive\n"multi\nline",b\nc,\n'}, "p.csv", "p.csv:4", "empty positive"),
    ("csv-empty-file", {"p.csv": "\n"}, "p.csv", "p.csv: ", "the file is empty (no header row)"),
    ("tsv-empty-query", {"p.tsv": "anchor\tpositive\n\tb\n"}, "p.tsv", "p.tsv:2", "empty query in column 'anchor'"),
    ("json-array-record", {"p.json": '[{"query": "a", "positive": "b"}, {"query": "", "positive": "c"}]'},
     "p.json", "p.json: record 2", "empty query"),
    ("json-array-syntax", {"p.json": '[\n{"query": "a", "positive": "b"},\n{"query": }\n]'}, "p.json", "p.json:3",
     "invalid JSON"),
    # a file cut short: the break's own line and column, not "column 1" of the (empty) next line
    ("corpus-line-cut-short", {"corpus.jsonl": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'}, ".",
     "corpus.jsonl:2", "invalid JSON (Expecting value, column 23)"),
    ("corpus-string-cut-short", {"corpus.jsonl": '{"_id": "d1", "text": "a"}\r\n{"_id": "d2", "text": "Attent\r\n'},
     ".", "corpus.jsonl:2", "invalid JSON (Unterminated string starting at, column 23)"),
    ("json-array-cut-short", {"p.json": '[\n{"query": "a", "positive": "b"},\n{"query": "c", "positive": "d"}\n\n'},
     "p.json", "p.json:3", "invalid JSON (Expecting ',' delimiter, column 32)"),
    ("parquet-empty-positive", {"p.parquet": pd.DataFrame({"query": ["a", "b"], "positive": ["c", None]})},
     "p.parquet", "p.parquet: row 2", "no positive"),
    ("parquet-int-column", {"p.parquet": pd.DataFrame({"query": ["a"], "positive": [3]})}, "p.parquet",
     "p.parquet: ", "column 'positive' holds int64, not text"),
    ("parquet-corrupt", {"p.parquet": b"PAR1 not really"}, "p.parquet", "p.parquet: ", "not a readable Parquet file"),
    ("flag-no-positives", {"f.jsonl": [FLAG[0], {"query": "a", "pos": [], "neg": ["b"]}]}, "f.jsonl", "f.jsonl:2",
     "nothing to mine"),
    ("flag-pos-not-list", {"f.jsonl": [{"query": "a", "pos": "b"}]}, "f.jsonl", "f.jsonl:1",
     "'pos' is str, not a list"),
    ("flag-empty-positive", {"f.jsonl": [{"query": "a", "pos": ["b", " "]}]}, "f.jsonl", "f.jsonl:1",
     "empty positive"),
    ("flag-missing-query", {"f.jsonl": [FLAG[1], {"pos": ["b"]}]}, "f.jsonl", "f.jsonl:2",
     "no query (column 'query' is missing or null)"),
    ("flag-neg-not-list", {"f.jsonl": [{"query": "a", "pos": ["b"], "neg": "c"}]}, "f.jsonl", "f.jsonl:1",
     "'neg' is str, not a list"),
    ("missing-path", {}, "nothing.jsonl", "nothing.jsonl: ", "no such file or folder"),
    ("unsupported-suffix", {"p.txt": "a\tb\n"}, "p.txt", "p.txt: ", "unsupported file type '.txt'"),
    # Silent changes and tracebacks found by the reliability drill (issue 11)
    ("qrels-headerless-word-score", {"qrels.tsv": "q1\td1\trelevant\nq2\td2\t1\n"}, ".", "qrels.tsv:1",
     "score 'relevant' is not a number"),
    # Found by the rest of the drill (issue 19): a fourth column without a header is TREC's only when it says so
    ("qrels-four-columns-headerless", {"qrels.tsv": "q1\t0\td1\t1\nq2\td2\t1\t7\n"}, ".", "qrels.tsv:2",
     "4 columns without a header, and the second ('d2') is not TREC's iteration column (0 or Q0)"),
    ("qrels-row-longer-than-its-header", {"qrels.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\t7\n"}, ".",
     "qrels.tsv:2", "expected 3 columns (query-id, corpus-id, score: the header on line 1), found 4"),
    ("corpus-text-null", {"corpus.jsonl": [{"_id": "d1", "text": None}]}, ".", "corpus.jsonl:1", "'text' is null"),
    ("corpus-id-null", {"corpus.jsonl": [{"_id": None, "text": "a"}]}, ".", "corpus.jsonl:1", "_id is null"),
    ("corpus-repeated-key", {"corpus.jsonl": '{"_id": "d1", "text": "a", "text": "b"}\n'}, ".", "corpus.jsonl:1",
     "the key 'text' appears twice in one object"),
    ("queries-repeated-key", {"queries.jsonl": '{"_id": "q1", "_id": "q2", "text": "a"}\n'}, ".", "queries.jsonl:1",
     "the key '_id' appears twice"),
    ("json-array-repeated-key", {"p.json": '[{"query": "a", "positive": "b"}, {"query": "c", "query": "d", '
                                           '"positive": "e"}]'}, "p.json", "p.json: record 2",
     "the key 'query' appears twice"),
    ("corpus-lone-surrogate", {"corpus.jsonl": '{"_id": "d1", "text": "a \\ud800 b"}\n'}, ".", "corpus.jsonl:1",
     "the escape \\ud800 is half of a UTF-16 surrogate pair"),
    ("flag-lone-surrogate", {"f.jsonl": '{"query": "a", "pos": ["b"]}\n{"query": "c", "pos": ["x\\udc00"]}\n'},
     "f.jsonl", "f.jsonl:2", "the escape \\udc00"),
    ("json-array-lone-surrogate", {"p.json": '[{"query": "\\ud83d\\ude00 ok", "positive": "b"}, '
                                             '{"query": "c", "positive": "\\ude00"}]'}, "p.json",
     "p.json: record 2", "the escape \\ude00"),
    ("flag-first-line-without-pos", {"f.jsonl": '{"query": "a", "neg": ["b"]}\n{"query": "c", "pos": ["d"]}\n'},
     "f.jsonl", "f.jsonl:1", "no 'pos' field"),
    ("flag-pos-null", {"f.jsonl": [{"query": "a", "pos": None}]}, "f.jsonl", "f.jsonl:1", "'pos' is null"),
    ("pairs-first-line-without-positive", {"p.jsonl": [{"query": "a"}, {"query": "b", "positive": "c"}]},
     "p.jsonl", "p.jsonl:1", "found no positive column"),
    ("json-nested-too-deep", {"p.jsonl": "[" * 100_000 + "\n"}, "p.jsonl", "p.jsonl:1", "invalid JSON"),
    ("json-huge-number", {"p.jsonl": '{"query": ' + "9" * 5000 + "}\n"}, "p.jsonl", "p.jsonl:1", "invalid JSON"),
    ("triplet-negative-not-text", {"t.jsonl": [{"anchor": "a", "positive": "b", "negative": 3}]}, "t.jsonl",
     "t.jsonl:1", "the negative in 'negative' is int, not text"),
    ("triplet-parquet-int-negative", {"t.parquet": pd.DataFrame({"anchor": ["a"], "positive": ["b"],
                                                                 "negative": [3]})},
     "t.parquet", "t.parquet: ", "column 'negative' holds int64, not text"),
]


@pytest.mark.parametrize(("files", "target", "where", "fragment"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_raises_one_line_with_file_line_and_fix(tmp_path: Path, files: Files, target: str, where: str,
                                                          fragment: str) -> None:
    if target == ".":  # a BEIR folder: start from the good one and break one file
        beir_folder(tmp_path, **files)
    else:
        write(tmp_path, files)
    with pytest.raises(DataError) as caught:
        load_collection(tmp_path / target)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert where in message, message
    assert fragment in message, message
    assert " Fix: " in message, message
    assert "\n" not in message


@pytest.mark.parametrize("link", ["loop", "dangling"])
@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_a_link_that_cannot_be_followed_is_named_as_such(tmp_path: Path, name: str, link: str) -> None:
    folder = beir_folder(tmp_path, **{name: None})
    (folder / name).symlink_to(name if link == "loop" else "gone.jsonl")
    with pytest.raises(DataError, match=rf"{name}: is a link that cannot be followed \(.+\)\. Fix: point the link"):
        load_collection(folder)
    # the same link passed as a file
    with pytest.raises(DataError, match=r"is a link that cannot be followed"):
        load_collection(folder / name)


def test_flag_reader_refuses_other_file_types(tmp_path: Path) -> None:
    write(tmp_path, {"f.csv": "query,pos\na,b\n"})
    with pytest.raises(DataError, match=r"FlagEmbedding data is JSON lines, not \.csv\. Fix: write one"):
        load_flag(tmp_path / "f.csv")


# ---------------------------------------------------------------------------------------------------------------------
# The real collections (counts from shared/datasets/README.md)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "split", "docs", "queries", "qrels", "problems"),
    [
        # queries.jsonl holds every split's queries: those of the other splits are counted as left out
        ("scifact", "test", 5_183, 300, 339, 1),
        ("scifact", "train", 5_183, 809, 919, 1),
        ("nfcorpus", "test", 3_395, 323, 12_334, 1),
        ("nfcorpus", "dev", 3_395, 324, 11_385, 1),
        # two empty documents are skipped, and the one judgement that names one of them
        ("cranfield", "test", 1_398, 225, 1_611, 2),
    ],
)
def test_real_collections_load_with_the_documented_counts(name: str, split: str, docs: int, queries: int,
                                                          qrels: int, problems: int) -> None:
    started = time.perf_counter()
    collection = load_collection(shared_dataset(name), split=split)
    elapsed = time.perf_counter() - started

    assert len(collection.doc_ids) == len(set(collection.doc_ids)) == docs
    assert len(collection.query_ids) == queries
    assert sum(len(p) for p in collection.positives.values()) == qrels
    assert len(collection.problems) == problems
    assert all(text.strip() for text in collection.doc_texts)
    assert all(d in collection.doc_index for p in collection.positives.values() for d in p)
    assert elapsed < 5, f"loading {name} took {elapsed:.1f}s"


@pytest.mark.slow
def test_cranfield_reports_its_two_empty_documents() -> None:
    collection = load_collection(shared_dataset("cranfield"))
    assert collection.problems[0] == ("corpus.jsonl: 2 documents with empty text skipped "
                                      "(471 on line 471, 995 on line 995).")
    assert "471" not in collection.doc_index
    assert beir_splits(shared_dataset("nfcorpus")).keys() == {"test", "dev", "train"}


@pytest.mark.parametrize(("count", "words", "expected"), [
    (0, ("duplicate",), "0 duplicates"),
    (1, ("duplicate",), "1 duplicate"),
    (2, ("duplicate",), "2 duplicates"),
    (1, ("query", "queries"), "1 query"),
    (12345, ("query", "queries"), "12,345 queries"),
])
def test_counted_agrees_the_noun_with_the_count(count: int, words: tuple[str, ...], expected: str) -> None:
    assert counted(count, *words) == expected
