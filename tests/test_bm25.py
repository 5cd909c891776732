"""BM25Index against rank_bm25 (the reference it must equal) and against a brute-force sort for top-k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from hnm_core.retrieve import bm25
from hnm_core.retrieve.bm25 import BM25Index
from hnm_core.retrieve.tokenize import tokenize, tokenize_many
from hnm_core.retrieve.result import SearchResult
from hnm_core.errors import SettingsError

from .conftest import shared_dataset

CORPUS = [
    "The cat sat on the mat.",
    "",  # empty document
    "A dog chased the cat; the cat ran up a tree.",
    "The cat sat on the mat.",  # duplicate of row 0
    "Café crème: ﬁne ＦＯＯＤ in Straße, naïve 東京 review",  # ligature, full-width, ß, CJK
    "the the the the",
    "Dogs and cats, cats and dogs, dog dog dog.",
    "state-of-the-art retrieval with BM25 and the like",
]

QUERIES = [
    "cat",
    "the cat cat the",  # repeated terms: each occurrence adds again
    "the",  # in most documents: negative idf, replaced by epsilon * mean idf
    "dog tree unknownword",  # unknown term adds nothing
    "",  # empty query
    "!!! ???",  # no tokens at all
    "CAFE CAFÉ fine food strasse",  # NFKC + casefold on the query side too
    "東京 bm25 state of the art",
]


def reference(corpus: list[str], k1: float, b: float, epsilon: float, *, stopwords: bool = False) -> BM25Okapi:
    return BM25Okapi([tokenize(t, stopwords=stopwords) for t in corpus], k1=k1, b=b, epsilon=epsilon)


def reference_scores(model: BM25Okapi, query: str, *, stopwords: bool = False) -> np.ndarray:
    # rank_bm25 divides 0 by 0 for empty documents when b = 1 (NaN); ours defines those scores as 0.
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(model.get_scores(tokenize(query, stopwords=stopwords)), nan=0.0)


def brute_force_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices sorted by score descending, ties by lower index: a full sort of every row."""
    columns = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.lexsort((columns, -scores), axis=1)[:, :k]


def read_beir(folder: Path) -> tuple[list[str], list[str]]:
    with (folder / "corpus.jsonl").open(encoding="utf-8") as fh:
        docs = [(row.get("title") or "") + " " + (row.get("text") or "") for row in map(json.loads, fh)]
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = [row["text"] for row in map(json.loads, fh)]
    return docs, queries


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", ["hello", "world"]),
        ("state-of-the-art", ["state", "of", "the", "art"]),
        ("ＦＵＬＬ ｗｉｄｔｈ １２３", ["full", "width", "123"]),  # NFKC
        ("ﬁne oﬃce", ["fine", "office"]),  # ligatures (NFKC)
        ("Straße STRASSE", ["strasse", "strasse"]),  # casefold, not just lower
        ("naïve café 東京タワー", ["naïve", "café", "東京タワー"]),
        ("snake_case x2 3.14", ["snake_case", "x2", "3", "14"]),
        ("", []),
        ("  ... --- !!!", []),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_tokenize_stopwords() -> None:
    assert tokenize("The cat is on THE mat, and it sleeps", stopwords=True) == ["cat", "mat", "sleeps"]
    assert tokenize("the and of", stopwords=True) == []


@pytest.mark.parametrize("k1", [0.5, 1.5, 2.0])
@pytest.mark.parametrize("b", [0.0, 0.75, 1.0])
def test_scores_equal_rank_bm25(k1: float, b: float) -> None:
    index = BM25Index.build(CORPUS, k1=k1, b=b)
    model = reference(CORPUS, k1, b, 0.25)
    for query in QUERIES:
        ours = index.scores(query)
        assert ours.shape == (len(CORPUS),)
        assert np.all(np.isfinite(ours))
        np.testing.assert_allclose(ours, reference_scores(model, query), rtol=1e-6, atol=1e-12)


def test_edge_rows_behave() -> None:
    index = BM25Index.build(CORPUS)
    cat = index.scores("cat")
    assert cat[1] == 0.0  # the empty document
    assert cat[0] == cat[3] > 0  # duplicates score the same
    assert index.scores("cat cat")[0] == pytest.approx(2 * cat[0])  # a repeated query term counts twice
    assert not index.scores("").any() and not index.scores("unknownword").any()
    # "the" is in more than half the documents: its raw idf is negative, so it was floored to epsilon * mean idf.
    df = sum("the" in tokenize(text) for text in CORPUS)
    assert np.log(len(CORPUS) - df + 0.5) - np.log(df + 0.5) < 0
    assert index.idf[index.vocabulary["the"]] == pytest.approx(0.25 * reference(CORPUS, 1.5, 0.75, 0.25).average_idf)


def test_negative_mean_idf_gives_negative_scores_and_search_still_exact() -> None:
    # Every term is in most documents, so the mean idf is negative and so are the floored idfs: documents that
    # contain "a" score below the empty document, which scores 0.
    corpus = ["a b", "a b", "a b c", "", "a b", "b a a"]
    index = BM25Index.build(corpus, epsilon=0.5)
    model = reference(corpus, 1.5, 0.75, 0.5)
    for query in ["a", "a c", "c", "b b"]:
        np.testing.assert_allclose(index.scores(query), reference_scores(model, query), rtol=1e-6)
    assert (index.scores("a")[[0, 1, 2, 4, 5]] < 0).all()
    ref = np.stack([reference_scores(model, q) for q in ["a", "a c", "c", "b b"]])
    result = index.search(["a", "a c", "c", "b b"], k=4)
    np.testing.assert_array_equal(result.indices, brute_force_top_k(ref, 4))
    assert result.indices[0, 0] == 3  # the empty document (score 0) beats every negative score


@pytest.mark.parametrize("k", [1, 3, 5, 8, 50])
def test_search_equals_brute_force_sort_of_rank_bm25(k: int) -> None:
    index = BM25Index.build(CORPUS)
    model = reference(CORPUS, 1.5, 0.75, 0.25)
    ref = np.stack([reference_scores(model, q) for q in QUERIES])
    result = index.search(QUERIES, k)
    assert isinstance(result, SearchResult)
    width = min(k, len(CORPUS))  # k is clipped to the corpus size
    assert result.indices.shape == result.scores.shape == (len(QUERIES), width)
    assert result.indices.dtype == np.int64
    expected = brute_force_top_k(ref, k)
    np.testing.assert_array_equal(result.indices, expected)
    np.testing.assert_allclose(result.scores, np.take_along_axis(ref, expected, axis=1), rtol=1e-6)
    assert (np.diff(result.scores, axis=1) <= 0).all()


def test_search_breaks_ties_by_lower_index_among_many_equal_scores() -> None:
    # 30 identical matching documents and 40 non-matching ones: the top 10 must be the first 10 duplicates, and
    # zero-score documents fill the tail in index order.
    corpus = ["filler text"] * 40 + ["needle here"] * 30
    corpus = corpus[::2] + corpus[1::2]  # interleave so duplicates are not contiguous
    index = BM25Index.build(corpus)
    scores = index.scores("needle")
    matching = np.flatnonzero(scores > 0)
    top = index.search(["needle"], 10)
    np.testing.assert_array_equal(top.indices[0], matching[:10])
    tail = index.search(["needle"], 40)
    np.testing.assert_array_equal(tail.indices[0, 30:], np.flatnonzero(scores == 0)[:10])


def test_search_k_zero_and_empty_inputs() -> None:
    index = BM25Index.build(CORPUS)
    assert index.search(QUERIES, 0).indices.shape == (len(QUERIES), 0)
    empty_batch = index.search([], 5)
    assert empty_batch.indices.shape == (0, 5)
    no_docs = BM25Index.build([])
    assert no_docs.scores("cat").shape == (0,)
    assert no_docs.search(["cat"], 10).indices.shape == (1, 0)
    all_empty = BM25Index.build(["", "", ""])
    assert not all_empty.scores("cat").any()
    np.testing.assert_array_equal(all_empty.search(["cat"], 2).indices, [[0, 1]])


def test_score_matrix_and_pairs_match_single_query_scores() -> None:
    index = BM25Index.build(CORPUS)
    matrix = index.score_matrix(QUERIES)
    assert matrix.dtype == np.float32 and matrix.shape == (len(QUERIES), len(CORPUS))
    expected = np.stack([index.scores(q) for q in QUERIES])
    np.testing.assert_allclose(matrix, expected, rtol=1e-6)

    query_idx = np.array([6, 0, 0, 7, 4, 1, 6])
    doc_idx = np.array([4, 2, 1, 7, 0, 3, 0])
    pairs = index.score_pairs(QUERIES, query_idx, doc_idx)
    np.testing.assert_array_equal(pairs, expected[query_idx, doc_idx])
    assert index.score_pairs(QUERIES, np.array([], dtype=np.int64), np.array([], dtype=np.int64)).shape == (0,)
    with pytest.raises(IndexError):
        index.score_pairs(QUERIES, np.array([0]), np.array([len(CORPUS)]))


def test_stopwords_option() -> None:
    index = BM25Index.build(CORPUS, stopwords=True)
    assert "the" not in index.vocabulary and "cat" in index.vocabulary
    assert not index.scores("the and of").any()
    model = reference(CORPUS, 1.5, 0.75, 0.25, stopwords=True)
    for query in QUERIES:
        np.testing.assert_allclose(index.scores(query), reference_scores(model, query, stopwords=True), rtol=1e-6)
    # Stopwords are dropped from queries too, so "the cat" scores exactly like "cat".
    np.testing.assert_array_equal(index.scores("the cat"), index.scores("cat"))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"k1": -0.1}, "k1"), ({"b": 1.5}, "b"), ({"b": -0.1}, "b"), ({"epsilon": -1.0}, "epsilon"),
     ({"k1": float("nan")}, "k1")],
)
def test_invalid_parameters_raise_settings_error(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(SettingsError, match=word):
        BM25Index.build(CORPUS, **kwargs)


def test_negative_k_raises() -> None:
    with pytest.raises(SettingsError, match="k must be"):
        BM25Index.build(CORPUS).search(["cat"], -1)


def test_progress_reports_start_and_end() -> None:
    calls: list[tuple[str, int, int]] = []
    index = BM25Index.build(CORPUS, progress=lambda stage, done, total: calls.append((stage, done, total)))
    index.search(QUERIES, 3, progress=lambda stage, done, total: calls.append((stage, done, total)))
    build = [c for c in calls if c[0] == "bm25 index"]
    search = [c for c in calls if c[0] == "bm25 search"]
    assert build[0] == ("bm25 index", 0, len(CORPUS)) and build[-1] == ("bm25 index", len(CORPUS), len(CORPUS))
    assert search[0] == ("bm25 search", 0, len(QUERIES)) and search[-1] == ("bm25 search", len(QUERIES), len(QUERIES))


@pytest.mark.slow
def test_cranfield_all_queries_equal_rank_bm25() -> None:
    folder = shared_dataset("cranfield")
    docs, queries = read_beir(folder)
    index = BM25Index.build(docs)
    model = reference(docs, 1.5, 0.75, 0.25)
    ref = np.stack([reference_scores(model, q) for q in queries])
    np.testing.assert_allclose(index.score_matrix(queries), ref, rtol=1e-6)  # float32 output
    result = index.search(queries, 100)
    expected = brute_force_top_k(ref, 100)
    np.testing.assert_array_equal(result.indices, expected)
    np.testing.assert_allclose(result.scores, np.take_along_axis(ref, expected, axis=1), rtol=1e-6)


EDGE_TEXTS = [
    "",
    "\u0301accent first, then text",  # starts with a combining mark: must not compose with the previous text's end
    "ends with e",
    "\u0301",
    "nul\x00inside\x00\x00here",  # the join character itself, inside a text
    "ﬁne ＦＯＯＤ Straße ΣΊΣΥΦΟΣ",
    "한국어 텍스트 and ᄀ\u1161 jamo",  # Hangul jamo compose under NFKC
    "the and of it",
    "   ",
]


@pytest.mark.parametrize("stopwords", [False, True])
def test_tokenize_many_equals_tokenize_on_each_text(stopwords):
    tokens, lengths = tokenize_many(EDGE_TEXTS + CORPUS, stopwords=stopwords)
    expected = [tokenize(t, stopwords=stopwords) for t in EDGE_TEXTS + CORPUS]
    assert lengths.tolist() == [len(t) for t in expected]
    assert tokens == [token for text in expected for token in text]
    empty_tokens, empty_lengths = tokenize_many([])
    assert empty_tokens == [] and len(empty_lengths) == 0


def test_index_built_in_tiny_blocks_equals_the_one_block_index(monkeypatch):
    texts = EDGE_TEXTS + CORPUS
    whole = BM25Index.build(texts)
    monkeypatch.setattr(bm25, "_BUILD_STEP", 2)
    blocks = BM25Index.build(texts)
    assert blocks.vocabulary == whole.vocabulary
    assert (blocks._term_doc != whole._term_doc).nnz == 0
    assert np.array_equal(blocks._term_doc.indptr, whole._term_doc.indptr)
    assert np.array_equal(blocks._term_doc.indices, whole._term_doc.indices)
    assert np.array_equal(blocks._term_doc.data, whole._term_doc.data)
    assert np.array_equal(blocks.idf, whole.idf) and np.array_equal(blocks.doc_lengths, whole.doc_lengths)
    model = reference(texts, 1.5, 0.75, 0.25)
    for query in QUERIES + EDGE_TEXTS:
        assert np.array_equal(blocks.scores(query), np.nan_to_num(model.get_scores(tokenize(query)), nan=0.0))
