"""The false-negative audit on real collections: hnm's curation against sentence-transformers' mine_hard_negatives,
on the same hidden split, with the same model; and candidate default settings across collections and splits.

    HNM_CACHE_DIR=/tmp/hnm-bench-cache .venv/bin/python bench/bench_audit.py compare [--datasets cranfield nfcorpus]
        [--hide 0.5] [--seed 0] [--negatives 10]
    HNM_CACHE_DIR=/tmp/hnm-bench-cache .venv/bin/python bench/bench_audit.py defaults
        [--datasets cranfield nfcorpus scifact] [--seeds 0 1 2]

compare: for each collection, hide `hide` of the positives of every query with two or more
(hnm_core.audit.report.hide_positives), mine the visible rest with hnm at its default settings (BM25 + dense top-100, the
MiniLM bi-encoder as its own teacher), curate at hnm's defaults, at the old default (relative margin 0.05 against
the lowest positive, the NV-Retriever rule) and at the sweep's picks for a 2% and a 1% leak target; then run
sentence-transformers' mine_hard_negatives on (query, visible positive) pairs with the whole corpus, naive top-N and
relative_margin=0.05, with the same loaded model. Every method's negatives are measured the same way: the leak
(negatives that are hidden positives, or have the same normalised text as one), the share of hidden positives
exported, the queries that got the full quota, and hardness from hnm's cached embeddings (mean cosine, and median
dense rank among the documents that are not visible positives).

defaults: the audit figures (hnm_core.audit.report.audit_figures) of a few candidate default settings on every collection
and split seed. docs/audit.md holds a run of both.
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
from hnm_core.curate.rules import CurateParams, curate
from hnm_core.data import Collection, load_collection, normalize_text
from hnm_core.engines.local import mine
from hnm_core.models.loading import load_bi_encoder
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
    median_dense_rank: float


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
                   float(cos.mean()) if n else float("nan"), float(np.median(ranks)) if n else float("nan"))


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


def _mine(name: str, seed: int, args: argparse.Namespace, encoder=None):
    collection = load_collection(DATASETS / name)
    split = hide_positives(collection, hide=args.hide, seed=seed)
    values = validate({"negatives": args.negatives, "seed": seed})
    start = time.perf_counter()
    pool = mine(split.apply(collection), values, cache_dir=args.cache_dir, encoder=encoder)
    return collection, split, values, pool, time.perf_counter() - start


def compare(name: str, args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """hnm at its defaults, the old default and the sweep's picks, and sentence-transformers, on one split."""
    values = validate({})
    encoder = load_bi_encoder(values["model"], precision=values["precision"],
                              max_seq_length=values["max_seq_length"])
    collection, split, values, pool, mined = _mine(name, args.seed, args, encoder)
    measure = Measure(collection, split, pool)
    defaults = CurateParams.from_settings(values)
    start = time.perf_counter()
    report = audit_pool(pool, split, defaults, target_leak=0.02)
    swept = time.perf_counter() - start
    notes = [f"{name}: {split.n_hidden:,} positives hidden in {split.n_audited:,} of {len(collection.query_ids):,} "
             f"queries; mining (embeddings cached) {mined:.1f} s, sweep of {len(report.sweep.table)} settings "
             f"{swept:.1f} s"]
    methods = [("hnm defaults", defaults), ("hnm old default (rm 0.05, lowest positive)", OLD_DEFAULT)]
    for target in (0.02, 0.01):
        rec = report.sweep.recommend(target_leak=target)
        label = f"hnm sweep pick, target {target:.0%}"
        methods.append((label, rec.params))
        notes.append(f"{name}, {label}: {_describe(rec.settings)}"
                     + ("" if rec.met_target else f" (target not met: {rec.reason})"))
    rows = [measure.row(name, method, hnm_negatives(pool, curate(pool.frame, params).selected), args.negatives)
            for method, params in methods]
    cache = Path(args.cache_dir or default_cache_dir()) / "st-mine"
    for method, margin in ((f"st naive top-{args.negatives}", None), ("st relative_margin 0.05", 0.05)):
        negatives = st_negatives(collection, split, encoder.model, negatives=args.negatives,
                                 relative_margin=margin, cache=cache)
        rows.append(measure.row(name, method, negatives, args.negatives))
    return rows, notes


OLD_DEFAULT = CurateParams(relative_margin=0.05, absolute_margin=None, margin_ref="min", ceiling=None, skip_n=0,
                           near_dup=0.98, cluster_rule=False, floor=None)

CANDIDATES: tuple[tuple[str, dict], ...] = (
    ("defaults: rm 0.05, auto reference", dict(relative_margin=0.05, margin_ref="auto", skip_n=0, near_dup=0.98,
                                               cluster_rule=False)),
    ("rm 0.05 vs lowest positive", dict(relative_margin=0.05, margin_ref="min", skip_n=0, near_dup=0.98,
                                        cluster_rule=False)),
    ("rm 0.05 vs median positive", dict(relative_margin=0.05, margin_ref="median", skip_n=0, near_dup=0.98,
                                        cluster_rule=False)),
    ("rm 0.05 vs mean positive", dict(relative_margin=0.05, margin_ref="mean", skip_n=0, near_dup=0.98,
                                      cluster_rule=False)),
    ("rm 0.05 vs highest positive", dict(relative_margin=0.05, margin_ref="max", skip_n=0, near_dup=0.98,
                                         cluster_rule=False)),
    ("no rule (near_dup 0.98 only)", dict(relative_margin=None, skip_n=0, near_dup=0.98, cluster_rule=False)),
    ("skip 10", dict(relative_margin=None, skip_n=10, near_dup=0.98, cluster_rule=False)),
    ("cluster", dict(relative_margin=None, skip_n=0, near_dup=0.98, cluster_rule=True)),
    ("cluster + skip 5", dict(relative_margin=None, skip_n=5, near_dup=0.98, cluster_rule=True)),
    ("cluster + skip 10 (earlier defaults)", dict(relative_margin=None, skip_n=10, near_dup=0.98, cluster_rule=True)),
    ("cluster + skip 10 + rm 0.05", dict(relative_margin=0.05, margin_ref="min", skip_n=10, near_dup=0.98,
                                         cluster_rule=True)),
    ("cluster + skip 5 + near_dup 0.6", dict(relative_margin=None, skip_n=5, near_dup=0.6, cluster_rule=True)),
)


def candidates(args: argparse.Namespace) -> pd.DataFrame:
    """Candidate defaults on every collection and seed: mean leak (max over seeds), mean teacher score, lowest
    coverage."""
    from hnm_core.audit import audit_figures, hidden_rows, hidden_share

    records = []
    for name in args.datasets:
        for seed in args.seeds:
            collection, split, values, pool, _ = _mine(name, seed, args)
            frame = pool.frame
            hidden = hidden_rows(frame, pool.collection, split)
            share = hidden_share(frame, hidden)  # "auto" chooses as on the collection, hidden positives counted
            base = CurateParams.from_settings(values)
            for label, change in CANDIDATES:
                params = dataclasses.replace(base, **change)
                fig = audit_figures(frame, hidden, curate(frame, params, auto_share=share), n_hidden=split.n_hidden)
                records.append({"setting": label, "collection": name, "seed": seed, "leak": fig.leak_rate,
                                "exported": fig.hidden_exported, "teacher": fig.mean_teacher,
                                "coverage": fig.coverage})
    data = pd.DataFrame(records)
    grouped = data.groupby(["setting", "collection"], sort=False).agg(
        leak=("leak", "mean"), leak_max=("leak", "max"), teacher=("teacher", "mean"), coverage=("coverage", "min"))
    cells = grouped.apply(lambda r: f"{r.leak:.2%} ({r.leak_max:.2%}) / {r.teacher:.3f} / {r.coverage:.1%}",
                          axis=1).unstack("collection")
    return cells[list(args.datasets)].reset_index()


def _describe(settings: dict) -> str:
    return ", ".join(f"{k} {'off' if v is None else v}" for k, v in settings.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("compare", "defaults"), default="compare",
                        help="compare: hnm vs sentence-transformers on one split; defaults: candidate default "
                             "settings on every collection and seed")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="default: cranfield nfcorpus (compare), cranfield nfcorpus scifact (defaults)")
    parser.add_argument("--hide", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0, help="the split of `compare`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the splits of `defaults`")
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $HNM_CACHE_DIR or ~/.cache/hnm")
    args = parser.parse_args()
    if args.mode == "defaults":
        args.datasets = args.datasets or ["cranfield", "nfcorpus", "scifact"]
        print(f"mean leak (max over seeds {', '.join(map(str, args.seeds))}) / mean teacher score / lowest coverage")
        print(_markdown(candidates(args)))
        return
    args.datasets = args.datasets or ["cranfield", "nfcorpus"]
    rows: list[Row] = []
    notes: list[str] = []
    for name in args.datasets:
        more_rows, more_notes = compare(name, args)
        rows += more_rows
        notes += more_notes
    table = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    table["queries full"] = table["full_quota"].astype(str) + "/" + table["n_queries"].astype(str)
    table["leak"] = (100 * table["leak"]).map("{:.1f}%".format) + " (" + table["n_leaked"].astype(str) + "/" \
        + table["n_selected"].astype(str) + ")"
    table["hidden exported"] = (100 * table["hidden_exported"]).map("{:.1f}%".format)
    table["mean teacher"] = table["mean_teacher"].map("{:.3f}".format)
    table["median dense rank"] = table["median_dense_rank"].map("{:.0f}".format)
    columns = ["collection", "method", "leak", "hidden exported", "queries full", "mean teacher",
               "median dense rank"]
    print(_markdown(table[columns]))
    print()
    print("\n".join(notes))


def _markdown(table: pd.DataFrame) -> str:
    """A Markdown table (pandas' to_markdown needs tabulate, which hnm does not depend on)."""
    cells = [list(table.columns)] + table.astype(str).values.tolist()
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
