"""The false-negative audit on real collections: hnm's curation against sentence-transformers' mine_hard_negatives,
on the same hidden split, with the same model.

    HNM_CACHE_DIR=/tmp/hnm-bench-cache .venv/bin/python bench/bench_audit.py [--datasets cranfield nfcorpus]
        [--hide 0.5] [--seed 0] [--negatives 10] [--target-leak 0.02]

For each collection: hide `hide` of the positives of every query with two or more (hnm_core.audit.hide_positives),
mine the visible rest with hnm (pool -> teacher, default settings: BM25 + dense top-100, the MiniLM bi-encoder as
its own teacher), curate at hnm's defaults, at the old default (relative margin 0.05 against the lowest positive,
the NV-Retriever rule) and at the sweep's recommendation; then run sentence-transformers' mine_hard_negatives on
(query, visible positive) pairs with the whole corpus, naive top-N and relative_margin=0.05, with the same loaded
model. Every method's negatives are measured the same way: the leak (negatives that are hidden positives, or texts
equal to one after normalisation), the share of hidden positives exported, the queries that got the full quota, and
hardness from hnm's cached embeddings (cosine and dense rank among the documents not labelled visible positive).
Prints one table; docs/audit.md holds a run of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hnm_core.audit import HiddenSplit, audit_pool, hide_positives
from hnm_core.cache import default_cache_dir
from hnm_core.curate import CurateParams, curate
from hnm_core.data import Collection, load_collection, normalize_text
from hnm_core.models import load_bi_encoder
from hnm_core.pipeline import mine
from hnm_core.pool import Pool
from hnm_core.settings import validate

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@dataclasses.dataclass(frozen=True)
class Row:
    collection: str
    method: str
    leak: float
    n_leaked: int
    n_selected: int
    hidden_exported: float
    full_quota: int
    n_queries: int
    mean_teacher: float
    mean_dense_rank: float


class Measure:
    """Scores any (query, doc) negatives of one split the same way, from hnm's embeddings of the audit pool."""

    def __init__(self, collection: Collection, split: HiddenSplit, pool: Pool) -> None:
        if pool.doc_embeddings is None or pool.query_embeddings is None:
            raise SystemExit("the audit pool has no embeddings: mine with the dense source")
        self.collection = collection
        self.split = split
        norm = [normalize_text(t) for t in collection.doc_texts]
        self.norm = norm
        self.hidden = {(q, norm[collection.doc_index[d]]) for q, docs in split.hidden.items() for d in docs}
        # Dense rank among documents not excluded by the pool builder: the visible positives and their duplicates.
        scores = np.asarray(pool.query_embeddings, np.float32) @ np.asarray(pool.doc_embeddings, np.float32).T
        by_text: dict[str, list[int]] = {}
        for i, text in enumerate(norm):
            by_text.setdefault(text, []).append(i)
        for qi, qid in enumerate(collection.query_ids):
            excluded = [j for d in split.visible[qid] for j in by_text[norm[collection.doc_index[d]]]]
            scores[qi, excluded] = -np.inf
        self.scores = scores
        self.sorted = -np.sort(-scores, axis=1)

    def row(self, name: str, method: str, negatives: dict[str, list[int]], quota: int) -> Row:
        """`negatives`: query id -> doc indices of its exported negatives."""
        c = self.collection
        pairs = [(c.query_index[q], j) for q, docs in negatives.items() for j in docs]
        qi = np.array([p[0] for p in pairs], dtype=np.int64)
        di = np.array([p[1] for p in pairs], dtype=np.int64)
        leaked = sum((c.query_ids[q], self.norm[d]) in self.hidden for q, d in pairs)
        cos = self.scores[qi, di]
        ranks = np.array([np.searchsorted(-self.sorted[q], -s, side="left") + 1 for q, s in zip(qi, cos)])
        full = sum(len(docs) >= quota for docs in negatives.values())
        n = len(pairs)
        return Row(name, method, leaked / n if n else float("nan"), leaked, n,
                   leaked / self.split.n_hidden if self.split.n_hidden else float("nan"), full, len(c.query_ids),
                   float(cos.mean()) if n else float("nan"), float(ranks.mean()) if n else float("nan"))


def hnm_negatives(pool: Pool, selected: np.ndarray) -> dict[str, list[int]]:
    frame = pool.frame[selected]
    index = pool.collection.doc_index
    out: dict[str, list[int]] = {q: [] for q in pool.collection.query_ids}
    for q, d in zip(frame["query_id"].tolist(), frame["doc_id"].tolist()):
        out[q].append(index[d])
    return out


def st_negatives(collection: Collection, split: HiddenSplit, model, *, negatives: int,
                 relative_margin: float | None, cache: Path) -> dict[str, list[int]]:
    """sentence-transformers' mine_hard_negatives on (query, visible positive) pairs with the whole corpus."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    c = collection
    if len(set(c.query_texts)) != len(c.query_texts):
        raise SystemExit(f"{c.name}: two queries share a text; mine_hard_negatives would merge them")
    pairs = [(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]]) for q in c.query_ids
             for d in split.visible[q]]
    dataset = Dataset.from_dict({"query": [p[0] for p in pairs], "positive": [p[1] for p in pairs]})
    mined = mine_hard_negatives(dataset, model, corpus=list(c.doc_texts), num_negatives=negatives,
                                relative_margin=relative_margin, sampling_strategy="top", use_faiss=True,
                                output_format="labeled-list", batch_size=64, verbose=False,
                                cache_folder=str(cache))
    text_doc: dict[str, int] = {}
    for i, text in enumerate(c.doc_texts):
        text_doc.setdefault(text, i)
    query_of = {text: q for q, text in zip(c.query_ids, c.query_texts)}
    out: dict[str, list[int]] = {q: [] for q in c.query_ids}
    seen: set[str] = set()
    # labeled-list repeats a query once per positive, with the same negatives: keep the first row of each query.
    for query, docs, labels in zip(mined["query"], mined["positive"], mined["labels"]):
        q = query_of[query]
        if q in seen:
            continue
        seen.add(q)
        out[q] = [text_doc[d] for d, label in zip(docs, labels) if label == 0]
    return out


def run(name: str, args: argparse.Namespace) -> list[Row]:
    collection = load_collection(DATASETS / name)
    split = hide_positives(collection, hide=args.hide, seed=args.seed)
    values = validate({"negatives": args.negatives, "seed": args.seed})
    encoder = load_bi_encoder(values["model"], precision=values["precision"],
                              max_seq_length=values["max_seq_length"])
    start = time.perf_counter()
    pool = mine(split.apply(collection), values, cache_dir=args.cache_dir, encoder=encoder)
    mined = time.perf_counter() - start
    measure = Measure(collection, split, pool)
    rows = []
    defaults = CurateParams.from_settings(values)
    old = dataclasses.replace(defaults, relative_margin=0.05, margin_ref="min", ceiling=None, skip_n=0,
                              near_dup=0.98, cluster_rule=False)
    start = time.perf_counter()
    report = audit_pool(pool, split, defaults, target_leak=args.target_leak)
    swept = time.perf_counter() - start
    rec = report.sweep.recommendation
    for method, params in (("hnm defaults", defaults), ("hnm rm 0.05 min (old default)", old),
                           (f"hnm sweep pick: {_describe(rec.settings)}", rec.params)):
        selected = curate(pool.frame, params).selected
        rows.append(measure.row(name, method, hnm_negatives(pool, selected), args.negatives))
    print(f"{name}: {split.n_hidden:,} positives hidden in {split.n_audited:,} of {len(collection.query_ids):,} "
          f"queries; mining {mined:.1f}s, sweep of {len(report.sweep.table)} points {swept:.1f}s")
    cache = Path(args.cache_dir or default_cache_dir()) / "st-mine"
    for method, margin in (("st naive top-10", None), ("st relative_margin 0.05", 0.05)):
        negatives = st_negatives(collection, split, encoder.model, negatives=args.negatives,
                                 relative_margin=margin, cache=cache)
        rows.append(measure.row(name, method.replace("10", str(args.negatives)), negatives, args.negatives))
    return rows


def _describe(settings: dict) -> str:
    return ", ".join(f"{k} {'off' if v is None else v}" for k, v in settings.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cranfield", "nfcorpus"])
    parser.add_argument("--hide", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--target-leak", type=float, default=0.02)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $HNM_CACHE_DIR or ~/.cache/hnm")
    args = parser.parse_args()
    rows = [row for name in args.datasets for row in run(name, args)]
    table = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    table["queries full"] = table["full_quota"].astype(str) + "/" + table["n_queries"].astype(str)
    table["leak"] = (100 * table["leak"]).map("{:.1f}%".format) + " (" + table["n_leaked"].astype(str) + "/" \
        + table["n_selected"].astype(str) + ")"
    table["hidden exported"] = (100 * table["hidden_exported"]).map("{:.1f}%".format)
    table["mean teacher"] = table["mean_teacher"].map("{:.3f}".format)
    table["mean dense rank"] = table["mean_dense_rank"].map("{:.1f}".format)
    columns = ["collection", "method", "leak", "hidden exported", "queries full", "mean teacher", "mean dense rank"]
    print(_markdown(table[columns]))


def _markdown(table: pd.DataFrame) -> str:
    """A Markdown table (pandas' to_markdown needs tabulate, which hnm does not depend on)."""
    cells = [list(table.columns)] + table.astype(str).values.tolist()
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
