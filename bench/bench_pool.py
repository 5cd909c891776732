"""Dense encode throughput (fp32 vs bf16) and cold vs warm candidate-pool builds on real BEIR collections.

    python bench/bench_pool.py [--datasets nfcorpus scifact] [--sample 512] [--top-k 100]

For each collection, in this one process:
- encode throughput: the packaged all-MiniLM-L6-v2 encodes `--sample` passages (seeded sample, max 256 tokens) in fp32
  and in bf16, each into an empty cache; "top-10 agreement" is the mean overlap of every query's top-10 among the
  sample under the two precisions (bf16 is the default where the CPU has avx512_bf16);
- cold pool: `build_pool` (BM25 + dense, default settings) into an empty cache, model loading included;
- warm pool: the same call again with a new, not yet loaded model handle: embeddings come from the cache, so the
  weights are never loaded. Target: warm under 5% of cold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout that was not pip-installed
from hnm_core.data import load_collection  # noqa: E402
from hnm_core.retrieve.dense import encode  # noqa: E402
from hnm_core.models.loading import cpu_has_bf16, load_bi_encoder  # noqa: E402
from hnm_core.pool.build import PoolParams, build_pool  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def top10_agreement(a_docs: np.ndarray, a_queries: np.ndarray, b_docs: np.ndarray, b_queries: np.ndarray) -> float:
    k = min(10, len(a_docs))
    top_a = np.argsort(-(a_queries.astype(np.float32) @ a_docs.astype(np.float32).T), axis=1)[:, :k]
    top_b = np.argsort(-(b_queries.astype(np.float32) @ b_docs.astype(np.float32).T), axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a.tolist(), top_b.tolist())]))


def bench(name: str, sample: int, top_k: int) -> dict[str, float | str]:
    collection = load_collection(DATASETS / name)
    rng = np.random.default_rng(0)
    picked = rng.choice(len(collection.doc_texts), size=min(sample, len(collection.doc_texts)), replace=False)
    docs = [collection.doc_texts[i] for i in picked]
    queries = list(collection.query_texts[:200])
    row: dict[str, float | str] = {"collection": name, "docs": len(collection.doc_ids),
                                   "queries": len(collection.query_ids)}
    embeddings = {}
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as cache:
            model = load_bi_encoder("all-MiniLM-L6-v2", precision=precision, max_seq_length=256)
            model.model.encode(["warm-up"])  # load weights and allocate before timing
            seconds, doc_emb = timed(lambda: np.array(encode(model, docs, cache_dir=cache)))
            query_emb = np.array(encode(model, queries, cache_dir=cache))
        row[f"{precision} passages/s"] = len(docs) / seconds
        embeddings[precision] = (doc_emb, query_emb)
    row["bf16 top-10 agreement"] = top10_agreement(*embeddings["fp32"], *embeddings["bf16"])
    with tempfile.TemporaryDirectory() as cache:
        params = PoolParams.from_settings({"top_k": top_k})
        cold, pool = timed(lambda: build_pool(collection, params, cache_dir=cache))
        fresh = load_bi_encoder("all-MiniLM-L6-v2", max_seq_length=256)
        warm, again = timed(lambda: build_pool(collection, params, cache_dir=cache, encoder=fresh))
        assert not fresh.loaded and again.frame.equals(pool.frame)
    row.update({"cold pool s": cold, "warm pool s": warm, "warm / cold": warm / cold,
                "pool rows": len(pool.frame), "precision": pool.meta["model"]["precision"]})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["nfcorpus", "scifact"])
    parser.add_argument("--sample", type=int, default=512, help="passages for the throughput measurement")
    parser.add_argument("--top-k", type=int, default=100)
    args = parser.parse_args()
    rows = [bench(name, args.sample, args.top_k) for name in args.datasets]
    print(f"CPU avx512_bf16: {cpu_has_bf16()}")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{v:,.3f}" if isinstance(v, float) and v < 10 else f"{v:,.1f}" if isinstance(v, float)
                 else f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
