"""studio.search: the Explore page's query search finds whole words and lists the best matches first."""

from __future__ import annotations

import pytest

from studio.search import search_queries

# NFCorpus queries (ids shortened), in the collection's order: the B12 ones come before "vitamin d".
QUERIES = {
    "q2338": "vitamin b12",
    "q2662": "vitamin b12 deficiency and arterial health",
    "q3083": "resolving the vitamin d-bate",
    "q199": "vitamin d from mushrooms , sun , or supplements ?",
    "q3082": "take vitamin d supplements with meals",
    "q2341": "Vitamin D",
    "q95": "prenatal vitamins",
    "q140": "D vitamin and calcium",
}


@pytest.mark.parametrize(("search", "expected"), [
    # the whole text first, then the words together in order, then as whole words anywhere, then "d" as the start of
    # a word being typed ("deficiency")
    ("vitamin D", ["q2341", "q3083", "q199", "q3082", "q140", "q2662"]),
    ("  VITAMIN   d ", ["q2341", "q3083", "q199", "q3082", "q140", "q2662"]),
    ("d vitamin", ["q140", "q3083", "q199", "q3082", "q2341"]),  # the words in this order first
    ("b12", ["q2338", "q2662"]),
    ("vitam", ["q2338", "q2662", "q3083", "q199", "q3082", "q2341", "q95", "q140"]),  # typing: a word's start
    ("supplements", ["q199", "q3082"]),
    ("q2341", ["q2341"]),  # an id, exactly
    ("q2", ["q2338", "q2662", "q2341"]),  # the start of ids
    ("q3083 vitamin", ["q3083"]),  # id and words together
    ("tamin", []),  # a fragment inside a word finds nothing
    ("zebra crossing", []),
])
def test_search_queries_matches_whole_words_best_first(search, expected):
    assert search_queries(list(QUERIES), list(QUERIES.values()), search) == expected


def test_search_without_words_lists_every_query_in_order():
    assert search_queries(list(QUERIES), list(QUERIES.values()), " ,? ") == list(QUERIES)
