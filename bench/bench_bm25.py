"""Time BM25 top-100 retrieval for every query of real BEIR collections: hnm's BM25Index vs rank_bm25 vs bm25s.

    python bench/bench_bm25.py [--datasets nfcorpus scifact] [--k 100] [--repeat 1] [--stopwords]

All three run in this one process, on the same texts (document = title + " " + text, all of queries.jsonl), each
timed `--repeat` times with the best time kept. "index" includes tokenizing the corpus, "search" includes tokenizing
the queries and producing sorted top-k indices; "tokenize s" is our tokenizer alone over corpus and queries, a cost
ours and rank_bm25 share, so it bounds how far apart their totals can be. rank_bm25 gets our tokens (so its scores
are the reference ours must equal, checked here too); bm25s uses its own tokenizer (regex `\w\w+`, lowercase, its own
English stopword list with --stopwords) and its default "lucene" idf, so only its timing compares.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Lets `python bench/bench_bm25.py` run from a checkout that was not pip-installed.
sys.path.insert(0, str(ROOT))
from hnm_core.retrieve.bm25 import BM25Index  # noqa: E402
from hnm_core.retrieve.tokenize import tokenize  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
T = TypeVar("T")


def read_beir(folder: Path) -> tuple[list[str], list[str]]:
    with (folder / "corpus.jsonl").open(encoding="utf-8") as fh:
        docs = [(row.get("title") or "") + " " + (row.get("text") or "") for row in map(json.loads, fh)]
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = [row["text"] for row in map(json.loads, fh)]
    return docs, queries


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    """Best wall time of `repeat` calls, and the last call's result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_ours(docs: list[str], queries: list[str], k: int, stopwords: bool, repeat: int) -> dict[str, float]:
    t_index, index = best_of(repeat, lambda: BM25Index.build(docs, stopwords=stopwords))
    t_search, _ = best_of(repeat, lambda: index.search(queries, k))
    return {"index": t_index, "search": t_search}


def run_rank_bm25(docs: list[str], queries: list[str], k: int, stopwords: bool, repeat: int) -> dict[str, float]:
    from rank_bm25 import BM25Okapi

    t_index, model = best_of(repeat, lambda: BM25Okapi([tokenize(d, stopwords=stopwords) for d in docs]))

    def search() -> np.ndarray:
        out = np.empty((len(queries), k), dtype=np.int64)
        for i, query in enumerate(queries):
            out[i] = np.argsort(-model.get_scores(tokenize(query, stopwords=stopwords)), kind="stable")[:k]
        return out

    t_search, _ = best_of(repeat, search)
    return {"index": t_index, "search": t_search}


def run_bm25s(docs: list[str], queries: list[str], k: int, stopwords: bool, repeat: int) -> dict[str, float]:
    import bm25s

    words = "en" if stopwords else None

    def index() -> bm25s.BM25:
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(docs, stopwords=words, show_progress=False), show_progress=False)
        return retriever

    t_index, retriever = best_of(repeat, index)

    def search() -> np.ndarray:
        # Strings, not ids: bm25s maps them through the corpus vocabulary and skips unknown ones.
        tokens = bm25s.tokenize(queries, stopwords=words, return_ids=False, show_progress=False)
        return retriever.retrieve(tokens, k=k, show_progress=False)

    t_search, _ = best_of(repeat, search)
    return {"index": t_index, "search": t_search}


def time_tokenize(docs: list[str], queries: list[str], stopwords: bool, repeat: int) -> float:
    """Our tokenizer alone over corpus and queries: a floor under ours and rank_bm25 alike (both use it)."""
    return best_of(repeat, lambda: [tokenize(t, stopwords=stopwords) for t in (*docs, *queries)])[0]


def check_equal(docs: list[str], queries: list[str], stopwords: bool, n: int = 50) -> float:
    """Largest relative difference between our scores and rank_bm25's over the first `n` queries."""
    from rank_bm25 import BM25Okapi

    index = BM25Index.build(docs, stopwords=stopwords)
    model = BM25Okapi([tokenize(d, stopwords=stopwords) for d in docs])
    worst = 0.0
    for query in queries[:n]:
        ours = index.scores(query)
        ref = model.get_scores(tokenize(query, stopwords=stopwords))
        worst = max(worst, float(np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-12))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["nfcorpus", "scifact"], help="folders under shared/datasets")
    parser.add_argument("--k", type=int, default=100, help="documents retrieved per query")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per step; the best is reported")
    parser.add_argument("--stopwords", action="store_true", help="drop English stopwords (all three libraries)")
    args = parser.parse_args()

    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"k={args.k}, repeat={args.repeat}, stopwords={args.stopwords}\n")
    print("| dataset | docs | queries | ours index s | ours search s | ours total s | rank_bm25 total s | "
          "bm25s total s | rank_bm25 / ours | bm25s / ours | tokenize s | max rel. diff vs rank_bm25 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    if args.stopwords:
        tokenize("", stopwords=True)  # loads scikit-learn's list once (~1 s of import), outside every timing
    for name in args.datasets:
        docs, queries = read_beir(DATASETS / name)
        ours = run_ours(docs, queries, args.k, args.stopwords, args.repeat)
        ref = run_rank_bm25(docs, queries, args.k, args.stopwords, args.repeat)
        other = run_bm25s(docs, queries, args.k, args.stopwords, args.repeat)
        total = ours["index"] + ours["search"]
        ref_total = ref["index"] + ref["search"]
        other_total = other["index"] + other["search"]
        tok = time_tokenize(docs, queries, args.stopwords, args.repeat)
        diff = check_equal(docs, queries, args.stopwords)
        print(f"| {name} | {len(docs):,} | {len(queries):,} | {ours['index']:.3f} | {ours['search']:.3f} | "
              f"{total:.3f} | {ref_total:.2f} | {other_total:.3f} | {ref_total / total:.0f}x | "
              f"{other_total / total:.2f}x | {tok:.3f} | {diff:.1e} |")
        print(f"|  (index / search) | | | | | | {ref['index']:.2f} / {ref['search']:.2f} | "
              f"{other['index']:.3f} / {other['search']:.3f} | {ref['search'] / ours['search']:.0f}x search | "
              f"{other['search'] / ours['search']:.2f}x search | | |")


if __name__ == "__main__":
    main()
