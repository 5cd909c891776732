"""Mine a synthetic collection of a million passages on one machine: wall time and peak RSS per stage.

    python bench/bench_scale.py [--docs 1000000] [--queries 10000] [--dim 256] [--workdir DIR]

The collection: passages of 30-60 words drawn from a 50,000-word synthetic vocabulary (Zipf-like, so BM25 meets
long and short posting lists), and `--dim` unit vectors planted around 1,000 cluster centres, written as a float16
.npy and passed as bring-your-own embeddings (no encoder runs). Each query has one positive passage: its text is 6
words of that passage, its vector the passage's plus noise.

Stages, each timed from its first progress report to the next stage's: positives (the duplicates of each query's
positives, by normalised text), bm25 index (tokenize + index, in blocks of
documents), read embeddings (check and cache both files), dense index (chosen by size: IVF above exact_max_docs,
with its recall against exact search on a sample of queries, then k-means), pool (BM25 and dense search, fusion
and features, per block of queries), curate (the default rules), map (the studio's 2-D map of the pool rows of 20
sampled queries). Peak RSS is the process's high-water mark within each stage (Linux resets it between stages).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Lets `python bench/bench_scale.py` run from a checkout that was not pip-installed.
sys.path.insert(0, str(ROOT))
from hnm_core.curate.rules import CurateParams, curate  # noqa: E402
from hnm_core.data import Collection  # noqa: E402
from hnm_core.pool.build import PoolParams, build_pool  # noqa: E402

VOCABULARY = 50_000
CENTRES = 1_000


def _peak_mib(reset: bool) -> float:
    """VmHWM (peak resident memory) of this process in MiB; `reset` starts a new high-water mark (Linux 4.0+)."""
    status = Path("/proc/self/status").read_text()
    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return peak


class StageClock:
    """A progress reporter that closes a stage when the next one reports, keeping (stage, seconds, peak MiB)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []
        self.stage: str | None = "positives"  # the duplicates of positives are found before any report
        self.began = time.perf_counter()
        _peak_mib(reset=True)

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            self.rows.append((self.stage, now - self.began, _peak_mib(reset=True)))
        self.stage, self.began = stage, now

    def __call__(self, stage: str, done: int, total: int) -> None:
        name = {"read document embeddings": "read embeddings", "read query embeddings": "read embeddings"}.get(
            stage, stage)
        if name != self.stage:
            self.mark(name)
        if name == "read embeddings" and stage == "read query embeddings" and done == total:
            self.mark("dense index")  # the index, its recall and k-means report nothing until the pool starts


def synthesize(n_docs: int, n_queries: int, dim: int, folder: Path, seed: int = 0) -> Collection:
    """The collection, with doc and query embeddings written to folder/docs.npy and folder/queries.npy."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(VOCABULARY)], dtype=object)
    weights = 1.0 / (np.arange(VOCABULARY) + 100.0)
    weights /= weights.sum()
    lengths = rng.integers(30, 61, n_docs)
    word_ids = rng.choice(VOCABULARY, int(lengths.sum()), p=weights)
    starts = np.r_[0, np.cumsum(lengths)]
    docs = tuple(" ".join(words[word_ids[starts[i] : starts[i + 1]]]) for i in range(n_docs))
    positive = rng.choice(n_docs, n_queries, replace=False)
    picks = rng.integers(0, 30, (n_queries, 6))  # 6 of the first 30 words of the positive passage
    queries = tuple(" ".join(words[word_ids[starts[p] + picks[q]]]) for q, p in enumerate(positive))

    centres = rng.standard_normal((CENTRES, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, CENTRES, n_docs)
    out = np.lib.format.open_memmap(folder / "docs.npy", mode="w+", dtype=np.float16, shape=(n_docs, dim))
    for start in range(0, n_docs, 65_536):
        stop = min(n_docs, start + 65_536)
        rows = centres[cluster[start:stop]] + rng.standard_normal((stop - start, dim)).astype(np.float32) * 0.08
        out[start:stop] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    out.flush()
    doc_rows = np.asarray(out[positive], dtype=np.float32)
    del out
    query_rows = doc_rows + rng.standard_normal(doc_rows.shape).astype(np.float32) * 0.06
    np.save(folder / "queries.npy", query_rows / np.linalg.norm(query_rows, axis=1, keepdims=True))
    doc_ids = tuple(f"d{i}" for i in range(n_docs))
    query_ids = tuple(f"q{i}" for i in range(n_queries))
    return Collection(name=f"synthetic-{n_docs}", doc_ids=doc_ids, doc_texts=docs, query_ids=query_ids,
                      query_texts=queries, positives={q: (doc_ids[p],) for q, p in zip(query_ids, positive)},
                      source="bench/bench_scale.py")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=None, help="where the embeddings and cache go (default: "
                                                                   "a temporary folder, removed after)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        collection = synthesize(args.docs, args.queries, args.dim, folder)
        print(f"synthesized {args.docs:,} passages, {args.queries:,} queries, dim {args.dim} in "
              f"{time.perf_counter() - began:.1f} s (peak {_peak_mib(reset=False):,.0f} MiB)", flush=True)
        clock = StageClock()
        params = PoolParams.from_settings({"top_k": 100})
        pool = build_pool(collection, params, cache_dir=folder / "cache", doc_embeddings=folder / "docs.npy",
                          query_embeddings=folder / "queries.npy", progress=clock)
        # The miner as its own teacher, as score_pool does when they are one model: its cosines are the scores.
        pool.frame["teacher_raw"] = pool.frame["teacher_score"] = pool.frame["dense_score"]
        clock.mark("curate")
        curation = curate(pool.frame, CurateParams.from_settings({}))
        clock.mark("map")
        _map(pool, seed=0, cache_dir=folder / "cache")
        clock.mark("end")

    print(f"\npython {platform.python_version()}, {platform.machine()}, {args.docs:,} passages, "
          f"{args.queries:,} queries, dim {args.dim}; pool {len(pool.frame):,} rows, "
          f"{curation.n_selected:,} negatives selected")
    print(f"dense index: {pool.meta['dense_index']}\n")
    print("| stage | wall s | peak RSS MiB | per second |")
    print("|---|---|---|---|")
    units = {"positives": args.docs, "bm25 index": args.docs, "read embeddings": args.docs + args.queries,
             "dense index": args.docs, "pool": args.queries, "curate": len(pool.frame)}
    names = {"positives": "passages", "bm25 index": "passages", "read embeddings": "vectors",
             "dense index": "passages", "pool": "queries", "curate": "rows"}
    for stage, seconds, peak in clock.rows:
        rate = f"{units[stage] / seconds:,.0f} {names[stage]}" if stage in units and seconds > 0 else ""
        print(f"| {stage} | {seconds:.2f} | {peak:,.0f} | {rate} |")


def _map(pool, *, seed: int, cache_dir: Path) -> None:
    """The studio's map at scale: the pool rows of 20 sampled queries, with those queries, projected to 2-D."""
    from hnm_core.pool.project import project_2d

    c = pool.collection
    queries = np.random.default_rng(seed).choice(len(c.query_ids), min(20, len(c.query_ids)), replace=False)
    ids = np.asarray(c.query_ids, dtype=object)[queries]
    rows = pool.frame[pool.frame["query_id"].isin(ids)]
    docs = np.unique(rows["doc_id"].map(c.doc_index).to_numpy(np.int64))
    project_2d(np.vstack([np.asarray(pool.doc_embeddings[docs]), np.asarray(pool.query_embeddings[np.sort(queries)])]),
               seed=seed, cache_dir=cache_dir)


if __name__ == "__main__":
    main()
