"""Cross-encoder teacher scoring speed: pairs/s in fp32 and in bf16 in one run, and how far bf16 changes the ranking.

    python bench/bench_teacher.py [--teacher DIR] [--data sample_data] [--split train] [--queries 0] [--top-n 30]

No trained cross-encoder ships here, so without `--teacher` the bench first trains a quick one, `hnm train-teacher`
on sample_data's train split (2 folds, 3 epochs, lr 5e-5, all-MiniLM-L6-v2 start, 190 pairs, about 18 steps a fold):
a trained head, so the timing is of a real trained cross-encoder, but far from a good teacher (its logits still
spread over a fraction of a unit). Its fold-0 model is then timed on the pairs
`hnm mine` would score: each query's positives and its `--top-n` best candidates of the default pool (BM25 + dense
MiniLM, top 100) of `--data` (`--queries N` keeps the first N queries).

Each timing starts from an empty score cache with the weights already loaded:
- fp32, and bf16 (the default where the CPU has avx512_bf16), both in hnm's batches: each query's pairs, longest
  document first, one predict call per batch (pair_scores.py);
- bf16 in pool order, 256 pairs per predict call: how scoring went before pairs were sorted.
"Top-10 agreement" is the mean overlap of each query's top 10 by fp32 and by bf16 logit.
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
from hnm_core.models.loading import cpu_has_bf16, load_cross_encoder  # noqa: E402
from hnm_core.teacher.pair_scores import pair_scores  # noqa: E402
from hnm_core.pool.build import PoolParams, build_pool  # noqa: E402
from hnm_core.teacher.scoring import rows_to_score  # noqa: E402
from hnm_core.teacher.training import train_teacher  # noqa: E402


def top10_agreement(query_ids: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    overlaps = []
    for q in np.unique(query_ids):
        rows = np.flatnonzero(query_ids == q)
        k = min(10, len(rows))
        top_a = set(rows[np.argsort(-a[rows], kind="stable")[:k]].tolist())
        top_b = set(rows[np.argsort(-b[rows], kind="stable")[:k]].tolist())
        overlaps.append(len(top_a & top_b) / k)
    return float(np.mean(overlaps))


def pool_order_scores(model, q_texts, d_texts, batch_size: int, chunk: int = 256) -> np.ndarray:
    out = []
    for start in range(0, len(q_texts), chunk):
        pairs = list(zip(q_texts[start : start + chunk], d_texts[start : start + chunk]))
        out.append(model.model.predict(pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="a folder from hnm train-teacher (default: train one now)")
    parser.add_argument("--data", type=Path, default=ROOT / "sample_data")
    parser.add_argument("--split", default="train")
    parser.add_argument("--queries", type=int, default=0, help="keep the first N queries (0 = all)")
    parser.add_argument("--top-n", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "hnm-bench-teacher")
    args = parser.parse_args()

    teacher = args.teacher
    if teacher is None:
        teacher = args.cache_dir / "teacher"
        started = time.perf_counter()
        result = train_teacher(load_collection(ROOT / "sample_data", split="train"), teacher, folds=2, epochs=3,
                               lr=5e-5, cache_dir=args.cache_dir)
        print(f"teacher: {result.trained} folds trained, {result.reused} kept, {time.perf_counter() - started:.0f} s "
              f"({sum(f.positives + f.negatives for f in result.folds)} training pairs over both folds)")
    collection = load_collection(args.data, split=args.split)
    if args.queries:
        from dataclasses import replace

        keep = collection.query_ids[: args.queries]
        collection = replace(collection, query_ids=keep, query_texts=collection.query_texts[: args.queries],
                             positives={q: collection.positives[q] for q in keep})
    pool = build_pool(collection, PoolParams.from_settings({}), cache_dir=args.cache_dir)
    frame = pool.frame[rows_to_score(pool, "cross-encoder", args.top_n)]
    c = pool.collection
    qi = frame["query_id"].map(c.query_index).to_numpy(np.int64)
    q_texts = np.asarray(c.query_texts, dtype=object)[qi]
    d_texts = np.asarray(c.doc_texts, dtype=object)[frame["doc_id"].map(c.doc_index).to_numpy(np.int64)]
    fold0 = str(teacher / "fold-0")
    print(f"{c.name}: {len(frame):,} pairs ({frame['query_id'].nunique()} queries, top {args.top_n} + positives), "
          f"mean {np.mean([len(q) + len(d) for q, d in zip(q_texts, d_texts)]):.0f} characters; "
          f"CPU avx512_bf16: {cpu_has_bf16()}")

    logits, rates = {}, {}
    for label, precision, sorted_run in (("fp32", "fp32", True), ("bf16", "bf16", True),
                                         ("bf16 pool order", "bf16", False)):
        model = load_cross_encoder(fold0, precision=precision)
        model.model.predict([("warm", "up")])  # load and allocate before timing
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            if sorted_run:
                raw = pair_scores(q_texts, d_texts, qi, model, batch_size=args.batch_size, cache_dir=cache,
                                  progress=lambda *a: None, stage="bench")
            else:
                raw = pool_order_scores(model, q_texts, d_texts, args.batch_size)
            seconds = time.perf_counter() - started
        logits[label], rates[label] = raw, len(raw) / seconds
        print(f"{label:>16}: {rates[label]:6.1f} pairs/s ({seconds:.1f} s)")
    qids = frame["query_id"].to_numpy()
    delta = np.abs(logits["fp32"] - logits["bf16"])
    print(f"bf16 / fp32 speed: {rates['bf16'] / rates['fp32']:.2f}x; top-10 agreement "
          f"{top10_agreement(qids, logits['fp32'], logits['bf16']):.3f}; |logit difference| mean {delta.mean():.3f}, "
          f"max {delta.max():.3f}; fp32 logits span {np.percentile(logits['fp32'], 5):.2f} .. "
          f"{np.percentile(logits['fp32'], 95):.2f} (5th-95th percentile)")


if __name__ == "__main__":
    main()
