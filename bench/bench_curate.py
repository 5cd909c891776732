"""Time `curate` on a synthetic pool: the app re-curates on every slider move, the target is < 100 ms for 100k rows.
Also times `reasons` over the whole pool (what the `pool` export pays; pages explain one query's rows only).

    .venv/bin/python bench/bench_curate.py [--queries 1000] [--candidates 100] [--repeats 15]

Prints one row per setting with the median and best wall time of `curate(frame, params)`, then the median of
`reasons(frame, curation)`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from hnm_core.curate.rules import CurateParams, curate
from hnm_core.curate.reasons import reasons
from hnm_core.schema import POOL_COLUMNS


def synthetic_pool(n_queries: int, n_candidates: int, seed: int) -> pd.DataFrame:
    """A pool table shaped like a real one: 1-3 positives then `n_candidates` candidates per query, in query order.

    Scores are cosine-like; positives score higher than most candidates; a teacher leaves about 5% unscored;
    the bm25 and dense ranks cover the candidates as two overlapping top-K lists.
    """
    rng = np.random.default_rng(seed)
    n_pos = rng.integers(1, 4, size=n_queries)
    per_query = n_pos + n_candidates
    n = int(per_query.sum())
    query = np.repeat(np.arange(n_queries), per_query)
    start = np.cumsum(per_query) - per_query
    within = np.arange(n) - np.repeat(start, per_query)
    is_pos = within < np.repeat(n_pos, per_query)
    cand_rank = np.where(is_pos, 0, within - np.repeat(n_pos, per_query) + 1)
    bm25_rank = np.where(is_pos, 0, rng.permutation(n) % (n_candidates + 20) + 1)
    bm25_rank = np.where(bm25_rank > n_candidates, 0, bm25_rank)
    dense_rank = np.where(is_pos, 0, cand_rank)
    score = np.where(is_pos, rng.uniform(0.6, 0.9, n), rng.beta(4, 5, n) * 0.9).astype(np.float32)
    score[rng.random(n) < 0.05] = np.nan
    score[is_pos] = np.where(np.isnan(score[is_pos]), 0.8, score[is_pos])
    frame = pd.DataFrame({
        "query_id": [f"q{q}" for q in query],
        "doc_id": [f"d{d}" for d in rng.choice(20 * n, size=n, replace=False)],  # (query, doc) pairs are unique
        "is_positive": is_pos,
        "in_bm25": bm25_rank > 0,
        "bm25_rank": bm25_rank,
        "bm25_score": rng.uniform(0, 20, n),
        "in_dense": ~is_pos,
        "dense_rank": dense_rank,
        "dense_score": rng.uniform(0, 1, n),
        "fused_rank": cand_rank,
        "pos_sim_max": np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0, 1, n)),
        "cluster": rng.integers(0, 300, size=n),
        "teacher_raw": score,
        "teacher_score": score,
    })
    return frame.astype(POOL_COLUMNS)


SETTINGS: tuple[tuple[str, CurateParams], ...] = (
    ("top", CurateParams(sampling="top")),
    ("top + cluster + skip 3 + floor", CurateParams(sampling="top", cluster_rule=True, skip_n=3, floor=0.1)),
    ("random", CurateParams(sampling="random")),
    ("random + cluster", CurateParams(sampling="random", cluster_rule=True)),
    ("simans", CurateParams(sampling="simans")),
    ("simans + cluster", CurateParams(sampling="simans", cluster_rule=True)),
    ("every rule on", CurateParams(ceiling=0.6, relative_margin=0.1, absolute_margin=0.1, skip_n=3, cluster_rule=True,
                                   near_dup=0.7, floor=0.1)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = synthetic_pool(args.queries, args.candidates, args.seed)
    print(f"pool: {len(frame):,} rows, {args.queries:,} queries")
    print(f"{'setting':<34} {'median ms':>10} {'best ms':>9} {'selected':>9} {'reasons ms':>11}")
    for name, params in SETTINGS:
        curate(frame, params)  # warm-up: first-call allocations and imports
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = curate(frame, params)
            times.append(time.perf_counter() - start)
        explain = []
        for _ in range(max(args.repeats // 3, 1)):
            start = time.perf_counter()
            reasons(frame, result)
            explain.append(time.perf_counter() - start)
        print(f"{name:<34} {np.median(times) * 1000:>10.1f} {min(times) * 1000:>9.1f} {result.n_selected:>9,} "
              f"{np.median(explain) * 1000:>11.1f}")


if __name__ == "__main__":
    main()
