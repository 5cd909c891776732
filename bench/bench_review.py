"""The review queue's proof, by simulation: half of each query's positives hidden, an oracle answers the queue from
the hidden positives (hidden -> unlabelled_positive, else confirmed_negative), and the hidden positives among the
exported negatives are the truth the estimate must cover.

    HNM_CACHE_DIR=/tmp/hnm-bench-cache .venv/bin/python bench/bench_review.py coverage [--datasets cranfield nfcorpus]
        [--seeds 10] [--work /tmp/hnm-review-bench]
    HNM_CACHE_DIR=/tmp/hnm-bench-cache .venv/bin/python bench/bench_review.py teach [--datasets cranfield]
        [--verdicts 200] [--seeds 3] [--epochs 1] [--continue-teacher]

Each collection is mined once (hide 0.5, split seed 0, the MiniLM bi-encoder as miner and teacher, hnm's defaults)
and its pool kept in WORK/<name>-pool; what the audit grid's 1,500 settings export is kept in WORK/<name>-grid.npz.

coverage: for queue seeds 0..S-1, the queue of 200 draws at the default review settings; for n = 50, 100, 200 the
oracle answers its first n, and the estimate's 95% interval at the current settings is checked against the true share
of hidden positives among the exported negatives; also at every grid setting (the share of (seed, setting) pairs
covered).

teach: the cheapest honest cross-fitted teacher (bi-encoder, 1 epoch, 2 folds, 1 negative per positive) trained on the
visible positives alone, then, for queue seeds 0..S-1 (default 3), with the oracle's verdicts on the queue's first V
draws and on V candidates drawn uniformly from the current export (numpy seed S); each rescores the audit pool and
the audit's leak is read at the defaults and at the lowest-leak setting of the grid with coverage >= 95%, twice: with
the teacher alone (what it learnt from the verdicts) and with the verdicts also applied to the curation (what
`hnm curate --overrides` exports after the retrain). Per-arm rows in WORK/teach-nV.csv, and queue - random per seed.

`--continue-teacher`: instead of retraining from the base model with the verdicts among all the labels, each fold of
the untaught teacher is trained one more epoch, from its own weights, on the rows of the training queries that have
verdicts (their labelled positives, verdicts and drawn negatives). Every arm then starts from the same weights, so
queue and random differ by their verdicts only, not by a reshuffled epoch over all the labels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hnm_core.audit import hidden_rows, hide_positives, mine_hidden_split, sweep
from hnm_core.audit.verdicts import grid_exports
from hnm_core.curate.estimate import estimate_share, estimate_table
from hnm_core.curate.overrides import Override
from hnm_core.curate.review import review_queue
from hnm_core.curate.rules import CurateParams, curate
from hnm_core.data import load_collection
from hnm_core.pool import load_pool, save_pool
from hnm_core.settings import validate

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
VALUES = validate({"hide": 0.5, "seed": 0})


def prepared(name: str, work: Path):
    """(collection, pool, hidden mask, current curation, grid exports), mined and curated once."""
    collection = load_collection(DATASETS / name, split="test")
    split = hide_positives(collection, hide=VALUES["hide"], seed=VALUES["seed"])
    folder = work / f"{name}-pool"
    if not (folder / "manifest.json").exists():
        pool, _ = mine_hidden_split(collection, VALUES)
        save_pool(pool, folder, overwrite=True)
    pool = load_pool(folder)
    hidden = hidden_rows(pool.frame, pool.collection, split)
    params = CurateParams.from_settings(VALUES)
    cache = work / f"{name}-grid.npz"
    if cache.exists():
        with np.load(cache) as saved:
            exports = [saved[f"p{i}"] for i in range(len(saved.files))]
    else:
        exports = grid_exports(pool.frame, params)
        np.savez(cache, **{f"p{i}": e for i, e in enumerate(exports)})
    return collection, split, pool, hidden, curate(pool.frame, params), exports


def oracle(table: pd.DataFrame, hidden: np.ndarray) -> pd.DataFrame:
    return table.assign(verdict=np.where(hidden[table["row"].to_numpy()], "unlabelled_positive",
                                         "confirmed_negative"))


def coverage(names: list[str], seeds: int, work: Path) -> None:
    rows = []
    for name in names:
        _, _, pool, hidden, current, exports = prepared(name, work)
        s0 = np.flatnonzero(current.selected)
        truth = hidden[s0].mean()
        grid_truth = np.array([hidden[e].mean() if len(e) else np.nan for e in exports])
        for seed in range(seeds):
            queue = review_queue(pool.frame, current, exports=exports, seed=seed)
            design = {"population": queue.population, "probability": queue.probability}
            for n in (50, 100, 200):
                answered = oracle(queue.table.head(n), hidden)
                e = estimate_share(answered, s0, **design)
                grid = estimate_table(answered, exports, **design)
                grid_ok = ((grid["low"] <= grid_truth) & (grid_truth <= grid["high"])).to_numpy()
                rows.append({"collection": name, "n": n, "seed": seed, "truth": truth, "estimate": e.share,
                             "low": e.low, "high": e.high, "covered": e.low <= truth <= e.high, "found": e.found,
                             "grid_covered": grid_ok.mean(), "grid_abs_error": np.nanmean(np.abs(grid["share"]
                                                                                                  - grid_truth))})
        print(f"{name}: exported {len(s0):,}, hidden among them {int(hidden[s0].sum())} ({truth:.2%}); queue "
              f"population {len(queue.population):,}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(work / "coverage.csv", index=False)
    summary = table.groupby(["collection", "n"]).agg(
        truth=("truth", "first"), mean_estimate=("estimate", "mean"), covered=("covered", "sum"),
        runs=("covered", "size"), mean_low=("low", "mean"), mean_high=("high", "mean"), mean_found=("found", "mean"),
        grid_covered=("grid_covered", "mean"), grid_abs_error=("grid_abs_error", "mean"))
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))


def continued_teacher(untaught: Path, out: Path, visible, given: list[Override]) -> None:
    """`untaught`'s folds each trained one more epoch on the verdict queries of the other folds (--continue-teacher)."""
    import json
    import shutil

    from hnm_core.pool import PoolParams, build_pool
    from hnm_core.teacher.folds import train_bi_encoder_fold
    from hnm_core.teacher.training import training_rows, verdicts_by_query

    if (out / "teacher.json").exists():
        return
    manifest = json.loads((untaught / "teacher.json").read_text())
    taught = manifest["settings"]  # the untaught teacher's own recipe, so each fold trains on as it was trained
    verdicts = verdicts_by_query(given)
    folds = [tuple(f["query_ids"]) for f in manifest["folds"]]
    frame = build_pool(visible, PoolParams.from_settings(VALUES)).frame
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(untaught, work)
    for i, held in enumerate(folds):
        others = tuple(q for j, fold in enumerate(folds) if j != i for q in fold if q in verdicts)
        rows, counts = training_rows(frame, visible, others, band=taught["band"],
                                     negatives_per_positive=taught["negatives_per_positive"], seed=taught["seed"],
                                     verdicts=verdicts)
        shutil.rmtree(work / f"fold-{i}")
        train_bi_encoder_fold(rows, str(untaught / f"fold-{i}"), work / f"fold-{i}",
                              negatives=taught["negatives_per_positive"], epochs=1,
                              batch_size=taught["batch_size"], lr=taught["lr"], max_length=taught["max_length"],
                              bf16=taught["precision"] == "bf16", seed=taught["seed"],
                              info={**counts, "held_out": list(held), "rows": len(rows)},
                              progress=lambda *a, **k: None, stage="teach")
    work.rename(out)


def teach(names: list[str], verdicts: int, seeds: int, work: Path, epochs: float = 1.0,
          continued: bool = False) -> None:
    from hnm_core.curate.overrides import Overrides
    from hnm_core.teacher import TeacherParams, score_pool
    from hnm_core.teacher.training import train_teacher

    recipe = {"kind": "bi-encoder", "folds": 2, "epochs": epochs, "negatives_per_positive": 1, "seed": 0}
    # in the teachers' folders and the CSV
    tag = f"n{verdicts}" + ("" if epochs == 1.0 else f"-epochs{epochs:g}") + ("-continued" if continued else "")
    rows = []
    for name in names:
        collection, split, pool, hidden, current, exports = prepared(name, work)
        frame, s0 = pool.frame, np.flatnonzero(current.selected)
        arms: dict[tuple[str, int], list[Override] | None] = {("no verdicts", 0): None}
        for seed in range(seeds):
            queue = oracle(review_queue(frame, current, exports=exports, seed=seed).table.head(verdicts), hidden)
            picked = np.random.default_rng(seed).choice(s0, size=verdicts, replace=True)
            uniform = oracle(pd.DataFrame({"row": picked}), hidden)
            for arm, table in (("queue", queue), ("random", uniform)):
                arms[arm, seed] = [Override(frame["query_id"].iat[r], frame["doc_id"].iat[r], v)
                                   for r, v in zip(table["row"], table["verdict"])]
        visible = split.apply(collection)
        base = CurateParams.from_settings(VALUES)
        for (arm, seed), given in arms.items():
            started = time.time()
            out = work / f"{name}-teacher-{arm.replace(' ', '-')}-seed{seed}-{tag}"
            if continued and given is not None:
                continued_teacher(work / f"{name}-teacher-no-verdicts-seed0-{tag}", out, visible, given)
            else:
                train_teacher(visible, out, **recipe, pool_settings=VALUES, overrides=given)
            params = TeacherParams.from_settings({**VALUES, "teacher": "bi-encoder", "teacher_model": str(out)})
            scored = score_pool(pool, params).frame
            marked = hidden_rows(scored, pool.collection, split)
            found = 0 if given is None else len({(o.query_id, o.doc_id) for o in given
                                                 if o.verdict == "unlabelled_positive"})
            row = {"collection": name, "arm": arm, "seed": seed, "verdicts": 0 if given is None else len(given),
                   "unlabelled_found": found}
            for applied in (False, True):
                result = sweep(scored, marked, base, n_hidden=split.n_hidden,
                               overrides=Overrides(tuple(given)) if applied and given else None)
                now = result.figures[result.current]
                covered = result.table[result.table["coverage"] >= 0.95]
                best = covered.sort_values(["leak_rate", "mean_teacher"], ascending=[True, False]).iloc[0]
                key = "applied" if applied else "teacher"
                row.update({f"{key}_leaked": now.n_leaked, f"{key}_selected": now.n_selected,
                            f"{key}_leak": now.leak_rate, f"{key}_coverage": now.coverage,
                            f"{key}_best_leak": best["leak_rate"]})
            rows.append(row)
            print(f"{name} | {arm} seed {seed} | {row['verdicts']} verdicts ({found} unlabelled positives) | "
                  f"teacher alone: leak {row['teacher_leak']:.2%} ({row['teacher_leaked']}/{row['teacher_selected']}),"
                  f" lowest at coverage >= 95% {row['teacher_best_leak']:.2%} | verdicts applied too: leak "
                  f"{row['applied_leak']:.2%} ({row['applied_leaked']}/{row['applied_selected']}), lowest "
                  f"{row['applied_best_leak']:.2%} | {time.time() - started:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(work / f"teach-{tag}.csv", index=False)
    paired = table[table["arm"] != "no verdicts"].pivot_table(index=["collection", "seed"], columns="arm")
    for key in ("teacher_leak", "teacher_best_leak", "applied_leak", "applied_best_leak", "unlabelled_found"):
        diff = paired[key]["queue"] - paired[key]["random"]
        print(f"queue - random, {key}: per seed {', '.join(f'{d:+.4f}' for d in diff)}; mean {diff.mean():+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("coverage", "teach"))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=None, help="queue seeds (default: 10 for coverage, 3 for teach)")
    parser.add_argument("--verdicts", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=1.0, help="teach: the teacher's epochs (a fraction to save time)")
    parser.add_argument("--continue-teacher", action="store_true",
                        help="teach: train the untaught teacher further on the verdict queries (module docstring)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hnm-review-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.what == "coverage":
        coverage(args.datasets or ["cranfield", "nfcorpus"], args.seeds or 10, args.work)
    else:
        teach(args.datasets or ["cranfield"], args.verdicts, args.seeds or 3, args.work, args.epochs,
              args.continue_teacher)


if __name__ == "__main__":
    main()
