"""How deep the relative margin cuts against each positive reference, per collection: the audit's figures on each
collection's training split for naive top-N mining and for the defaults with the margin measured from the lowest,
the median and the mean positive (docs/proof.md, "How deep each reference cuts").

    HNM_CACHE_DIR=... python bench/bench_references.py [--datasets ../shared/datasets] [--only adi,time,...]
        [--negatives 3]

Half of each query's positives are hidden (seed 0) and the rest mined with hnm's defaults, MiniLM as miner and
teacher; leak = hidden positives among the exported negatives, flagged = the share of the pool's candidates the
margin marks as likely false negatives, coverage = the share of queries that keep their full quota. Prints one
markdown row per collection.

`--signals`: instead, cheap per-collection signals of how positive-like the pool is, on the whole training split
mined with hnm's defaults (nothing hidden): the share of a query's positives that each of its three top-scored
candidates (naive top-3 mining's negatives) outscores, the share of candidates above 95% of the lowest, the median and
the highest positive's score, the median positive's score minus the mean of the top three candidates, and what
margin_ref "auto" chooses (hnm_core.curate.margins: `positive_like_share`, the share above the highest positive's
margin over every query with a scored candidate, and the reference it takes). cranfield, which has no training split,
is read whole (its test qrels).

`--overlap`: how far apart the references' exports lie, on the whole training split mined with hnm's defaults: per
reference, the queries that keep their full quota and the negatives exported, and for how many queries the median's
and the mean's negatives are the lowest positive's (where they coincide, so does the trained model).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout that was not pip-installed
from hnm_core.audit import hidden_rows, mine_hidden_split  # noqa: E402
from hnm_core.audit.leak import audit_figures  # noqa: E402
from hnm_core.curate.margins import auto_margin_ref, positive_like_share  # noqa: E402
from hnm_core.curate.rules import CurateParams, curate  # noqa: E402
from hnm_core.data import load_collection  # noqa: E402
from hnm_core.engines.local import MiningParams, mine  # noqa: E402
from hnm_core.settings import validate  # noqa: E402

COLLECTIONS = ("adi", "time", "med", "cacm", "lisa", "nfcorpus", "scifact")
REFERENCES = ("min", "median", "mean")


def row(folder: Path, negatives: int) -> str:
    collection = load_collection(folder, split="train")
    values = validate({"hide": 0.5, "seed": 0, "negatives": negatives})
    mined = mine_hidden_split(collection, values)
    frame = mined.pool.frame
    hidden = hidden_rows(frame, mined.pool.collection, mined.split)
    base = CurateParams.from_settings(values)
    arms = {"naive": dataclasses.replace(base, relative_margin=None, near_dup=None),
            **{ref: dataclasses.replace(base, margin_ref=ref) for ref in REFERENCES}}
    cells = []
    for name, params in arms.items():
        curation = curate(frame, params)
        figures = audit_figures(frame, hidden, curation, n_hidden=mined.split.n_hidden)
        labels = np.asarray(curation.labels)
        flagged = (labels == "false_negative").sum() / max(int(np.isin(labels, ["false_negative", "hard"]).sum()), 1)
        cells.append(f"{figures.leak_rate:.2%}" if name == "naive" else
                     f"{figures.leak_rate:.2%} / {flagged:.0%} / {figures.coverage:.0%}")
    per_query = np.mean([len(v) for v in collection.positives.values()])
    return f"| {folder.name} | {per_query:.1f} | " + " | ".join(cells) + " |"


def signals(folder: Path) -> str:
    """One markdown row of `--signals` (see the module docstring) for the collection at `folder`."""
    collection = load_collection(folder, split="test" if folder.name == "cranfield" else "train")
    frame = mine(collection, MiningParams.from_settings(validate({}))).frame
    rows = []
    for _, group in frame.groupby("query_id", sort=False):
        scores = group["teacher_score"].to_numpy(dtype=np.float64, na_value=np.nan)
        is_pos = group["is_positive"].to_numpy(dtype=bool)
        pos, cand = np.sort(scores[is_pos & ~np.isnan(scores)]), np.sort(scores[~is_pos & ~np.isnan(scores)])[::-1]
        if len(pos) and len(cand) >= 3:
            top3 = cand[:3]
            rows.append([np.mean([np.mean(pos < s) for s in top3]),
                         *(np.mean(cand > ref - abs(ref) * 0.05) for ref in (pos[0], np.median(pos), pos[-1])),
                         np.median(pos) - top3.mean()])
    outranked, above_min, above_median, above_max, gap = np.mean(rows, axis=0)
    per_query = np.mean([len(v) for v in collection.positives.values()])
    share = positive_like_share(frame)
    return (f"| {folder.name} | {per_query:.1f} | {outranked:.2f} | {above_min:.0%} | {above_median:.0%} | "
            f"{above_max:.1%} | {gap:+.3f} | {share:.1%}: {auto_margin_ref(share)} |")


def overlap(folder: Path, negatives: int) -> str:
    """One markdown row of `--overlap` (see the module docstring) for the collection at `folder`."""
    collection = load_collection(folder, split="train")
    values = validate({"negatives": negatives})
    frame = mine(collection, MiningParams.from_settings(values)).frame
    base = CurateParams.from_settings(values)
    chosen, cells = {}, []
    for ref in REFERENCES:
        curation = curate(frame, dataclasses.replace(base, margin_ref=ref))
        rows = frame.loc[curation.selected, ["query_id", "doc_id"]]
        chosen[ref] = {query: frozenset(docs) for query, docs in rows.groupby("query_id", sort=False)["doc_id"]}
        cells.append(f"{curation.n_full_quota:,} / {len(rows):,}")
    for ref in REFERENCES[1:]:
        queries = chosen["min"].keys() | chosen[ref].keys()
        same = sum(chosen["min"].get(query) == chosen[ref].get(query) for query in queries)
        cells.append(f"{same:,} of {len(queries):,}")
    return f"| {folder.name} | {len(collection.positives):,} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--only", default=",".join(COLLECTIONS), help="comma-separated collections")
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--signals", action="store_true", help="per-collection signals instead (module docstring)")
    parser.add_argument("--overlap", action="store_true", help="how far apart the references' exports lie instead")
    args = parser.parse_args()
    if args.overlap:
        print("| collection (train) | queries | " + " | ".join(f"{ref}: full quota / negatives" for ref in REFERENCES)
              + " | " + " | ".join(f"{ref}'s negatives = min's" for ref in REFERENCES[1:]) + " |")
        print("|---|---|" + "---|" * (2 * len(REFERENCES) - 1))
        for name in args.only.split(","):
            print(overlap(args.datasets / name, args.negatives), flush=True)
        return
    if args.signals:
        print("| collection (train) | positives per query | positives a naive negative outscores | candidates above "
              "the lowest positive's margin | above the median's | above the highest's | median positive - naive "
              "negatives | auto: share, reference |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.only.split(","):
            print(signals(args.datasets / name), flush=True)
        return
    print("| collection (train) | positives per query | naive leak | "
          + " | ".join(f"{ref}: leak / flagged / coverage" for ref in REFERENCES) + " |")
    print("|---|---|---|" + "---|" * len(REFERENCES))
    for name in args.only.split(","):
        print(row(args.datasets / name, args.negatives), flush=True)


if __name__ == "__main__":
    main()
