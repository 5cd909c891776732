"""Does the trained teacher learn? nDCG@10 of the bi-encoder's top 20, reranked by a teacher from `hnm train-teacher`,
on queries it never trained on, against the bi-encoder's own order, for a grid of training settings.

    python bench/bench_teacher_quality.py [--data sample_data] [--train-split train] [--eval-split dev]
                                          [--top 20] [--grid lr=2e-5,epochs=1 lr=1e-4,epochs=3,negatives=8 ...]

Each grid point trains a cross-fitted teacher (`train_teacher`, the defaults of the settings table for what it does
not name) on the training split's labels, from all-MiniLM-L6-v2, into the cache folder (a rerun reuses it). The
evaluation split's queries are in no fold, so each is scored as `hnm mine` scores an unseen query: the mean logit of
the fold models. The bi-encoder is all-MiniLM-L6-v2 itself (the miner). `nDCG@10 +unlab.` also counts the pairs of
the data folder's unlabelled_positives.tsv as relevant, where it has one (sample_data does).
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
from hnm_core.prove.evaluate import _metrics  # noqa: E402
from hnm_core.manifest import digest  # noqa: E402
from hnm_core.models.loading import load_bi_encoder, load_cross_encoder  # noqa: E402
from hnm_core.settings import defaults  # noqa: E402
from hnm_core.teacher.training import train_teacher  # noqa: E402

KEYS = {"lr": "lr", "epochs": "epochs", "negatives": "negatives_per_positive", "band": "band", "batch": "batch_size",
        "folds": "folds"}


def parse_point(text: str) -> dict[str, float]:
    point = {}
    for item in text.split(","):
        key, value = item.split("=")
        point[KEYS[key]] = int(value) if KEYS[key] in ("negatives_per_positive", "band", "batch_size", "folds") \
            else float(value)
    return point


def ndcg10(order: list[np.ndarray], relevant: list[set[int]]) -> float:
    return float(_metrics(order, relevant, (10,))["ndcg@10"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "sample_data")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="dev")
    parser.add_argument("--top", type=int, default=20, help="bi-encoder candidates reranked per query")
    parser.add_argument("--grid", nargs="*", default=["lr=2e-5,epochs=1"],
                        help="grid points: comma-separated lr, epochs, negatives, band, batch, folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "hnm-bench-teacher-quality")
    args = parser.parse_args()

    table = defaults("teacher_train")
    base = {"folds": table["folds"], "negatives_per_positive": table["negatives_per_positive"], "band": table["band"],
            "epochs": table["teacher_epochs"], "batch_size": table["teacher_batch_size"], "lr": table["teacher_lr"],
            "max_length": table["teacher_max_length"]}
    train = load_collection(args.data, split=args.train_split)
    test = load_collection(args.data, split=args.eval_split)
    c = test
    qids = [q for q in c.query_ids if c.positives.get(q)]
    encoder = load_bi_encoder(precision="fp32")
    docs = encode(encoder, c.doc_texts, cache_dir=args.cache_dir)
    queries = encode(encoder, c.query_texts, cache_dir=args.cache_dir)
    q_rows = np.array([c.query_index[q] for q in qids])
    cosines = np.asarray(queries, np.float32)[q_rows] @ np.asarray(docs, np.float32).T
    top = [np.argsort(-row, kind="stable")[: args.top] for row in cosines]
    relevant = [{c.doc_index[d] for d in c.positives[q]} for q in qids]
    extra_file = args.data / "unlabelled_positives.tsv"
    relevant_all = relevant
    if extra_file.is_file():
        lines = [line.split("\t") for line in extra_file.read_text(encoding="utf-8").splitlines()[1:] if line]
        more: dict[str, set[int]] = {}
        for q, d, *_ in lines:
            more.setdefault(q, set()).add(c.doc_index[d])
        relevant_all = [rel | more.get(q, set()) for q, rel in zip(qids, relevant)]
    positives = sum(map(len, train.positives.values()))
    print(f"{train.name}: teacher trained on {args.train_split} ({len(train.positives)} queries, {positives} "
          f"positives); evaluated on {args.eval_split} ({len(qids)} queries), bi-encoder top {args.top} reranked")
    print("| teacher | nDCG@10 | nDCG@10 +unlab. | logit spread (5th-95th) | train s |")
    print("|---|---|---|---|---|")
    print(f"| bi-encoder (all-MiniLM-L6-v2) alone | {ndcg10(top, relevant):.3f} | {ndcg10(top, relevant_all):.3f} "
          "| | |")
    pairs = [(c.query_texts[c.query_index[q]], c.doc_texts[d]) for q, row in zip(qids, top) for d in row]
    for text in args.grid:
        point = {**base, **parse_point(text)}
        out = args.cache_dir / f"teacher-{digest(point)[:12]}"
        started = time.perf_counter()
        result = train_teacher(train, out, seed=args.seed, cache_dir=args.cache_dir, **point)
        seconds = time.perf_counter() - started if result.trained else sum(f.seconds for f in result.folds)
        teacher = load_cross_encoder(str(out), precision="fp32")
        logits = np.mean([m.model.predict(pairs, batch_size=64) for m in teacher.folds], axis=0)
        logits = logits.reshape(len(qids), -1)
        order = [row[np.argsort(-logit, kind="stable")] for row, logit in zip(top, logits)]
        spread = np.percentile(logits, [5, 95])
        print(f"| {text} | {ndcg10(order, relevant):.3f} | {ndcg10(order, relevant_all):.3f} | "
              f"{spread[0]:.2f} .. {spread[1]:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
