"""The proof tables of docs/proof.md: `hnm prove` on every collection with a train split (and cranfield, split by
`--split-queries 0.5`), the protocol's recipe (all-MiniLM-L6-v2, MNRL, 1 epoch, batch 32, lr 2e-5, warmup 10%,
3 negatives per pair), seeds 0, 1, 2, arms zero, pairs, naive and hnm, and one more arm per variant.

    python bench/bench_prove.py [--datasets ../shared/datasets] [--out bench-proof] [--only adi,med]
                                [--seeds 0,1,2] [--jobs 1] [--bf16] [--nfcorpus-pairs 20000]
                                [--variant NAME=FLAGS ...] [--train-teacher FLAGS] [--cross-fit K]

A variant is a name and the pool, teacher and curate flags that change the hnm arm (`hnm prove --variant`), e.g.
`--variant "mean=--margin-ref mean"`; a `scifact:` prefix on its name runs it on that collection only.
`--train-teacher FLAGS` first trains a teacher on each collection's training split that a variant names as
`{teacher}` (`hnm train-teacher DATA --split train FLAGS`), e.g.
`--variant "ce=--teacher cross-encoder --teacher-model {teacher}"`.
`--cross-fit K` scores every judged query once where a collection has one labelled set to deal into K folds: the
classic collections' `qrels_all.tsv` (`--train-split all`) and cranfield's one qrels; SciFact and NFCorpus keep their
train -> test splits (300 and 323 test queries).

One `hnm prove` per collection into OUT/<collection> (each variant one more arm there, curated from the hnm arm's
pool when only curate flags differ), sharing one embedding cache; `--jobs N` runs N collections at once. Training
is fp32 as the protocol's unless `--bf16` (bf16 training and evaluation: about 1.7x faster on a CPU with
avx512_bf16, the same figures to 0.1 point, docs/proof.md). Proof folders cache their arms by training file, base
model, recipe and seed, so a rerun trains only what it lacks. Printed at the end and written to OUT/tables.md: each
collection's table with its paired intervals, then one row per arm: its paired nDCG@10 difference from naive on
every collection, the mean over collections, and its wins and losses (intervals above / below zero).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Collections with a train split (train -> test), smallest first, and cranfield, whose one qrels is split in two.
COLLECTIONS = ("adi", "time", "med", "cacm", "cranfield", "lisa", "scifact", "nfcorpus")
SPLIT_ONLY = {"cranfield": ["--train-split", "test", "--split-queries", "0.5"]}


def variants(specs: list[str]) -> dict[str, str]:
    """NAME=FLAGS pairs, in the order given."""
    out = {}
    for spec in specs:
        name, sep, flags = spec.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--variant {spec!r}: expected NAME=FLAGS. Fix: e.g. --variant 'mean=--margin-ref mean'")
        out[name.strip()] = flags
    return out


def jobs(datasets: Path, out: Path, only: set[str] | None, seeds: str, nfcorpus_pairs: int, bf16: bool,
         named: dict[str, str], teacher: str | None, cross_fit: int | None = None) -> dict[str, list[list[str]]]:
    """Per collection, the hnm command lines to run in order: the teacher first (when asked), then the proof."""
    todo: dict[str, list[list[str]]] = {}
    for collection in COLLECTIONS:
        data, folder = datasets / collection, out / collection
        if (only and collection not in only) or not data.is_dir():
            continue
        common = SPLIT_ONLY.get(collection, ["--train-split", "train", "--test-split", "test"])
        if cross_fit is not None and collection in SPLIT_ONLY:
            common = ["--train-split", "test", "--cross-fit", str(cross_fit)]
        elif cross_fit is not None and (data / "qrels_all.tsv").is_file():
            common = ["--train-split", "all", "--cross-fit", str(cross_fit)]
        common += ["--negatives", "3", "--seeds", seeds]
        common += ["--train-precision", "bf16", "--eval-precision", "bf16"] if bf16 else ["--train-precision", "fp32"]
        if collection == "nfcorpus":  # ~110k (query, positive) pairs: every arm trains on the same seeded sample
            common += ["--max-pairs", str(nfcorpus_pairs)]
        mine = {name.rpartition(":")[2]: flags for name, flags in named.items()
                if name.rpartition(":")[0] in ("", collection)}
        lines = []
        if teacher is not None and any("{teacher}" in flags for flags in mine.values()):
            lines.append(["train-teacher", str(data), "--split", "train", "--out", str(folder / "teacher"),
                          *shlex.split(teacher)])
        proof = ["prove", str(data), "--out", str(folder), *common]
        for name, flags in mine.items():
            proof += ["--variant", f"{name}={flags.replace('{teacher}', str(folder / 'teacher'))}"]
        todo[collection] = [*lines, proof]
    return todo


def run_all(todo: dict[str, list[list[str]]], parallel: int, log_dir: Path) -> int:
    """Run each collection's command lines in order, `parallel` collections at a time."""
    log_dir.mkdir(parents=True, exist_ok=True)
    queue = list(todo.items())
    running: list[tuple[str, list[list[str]], subprocess.Popen]] = []
    failed = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    def start(collection: str, lines: list[list[str]]) -> None:
        line = lines[0]
        log = log_dir / f"{collection}-{line[0]}.log"
        print(f"start: hnm {shlex.join(line)}  (log {log})", flush=True)
        with log.open("w") as out:  # the child writes through its own copy of the handle
            proc = subprocess.Popen([sys.executable, "-m", "hnm_core.cli", *line, "--quiet"], stdout=out,
                                    stderr=subprocess.STDOUT, env=env)
        running.append((collection, lines[1:], proc))

    while queue or running:
        for item in list(running):
            collection, rest, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            print(f"{'done' if proc.returncode == 0 else f'FAILED ({proc.returncode})'}: {collection}", flush=True)
            if proc.returncode != 0:
                failed += 1
            elif rest:
                start(collection, rest)
        while queue and len(running) < parallel:
            start(*queue.pop(0))
        time.sleep(1)
    return failed


def summary(out: Path, collections: list[str]) -> str:
    """Per arm, its paired nDCG@10 difference from naive on every collection (points, * where the 95% interval lies
    above zero, - below), the mean over the collections that ran it, and its wins and losses."""
    per: dict[str, dict[str, dict]] = {}
    for collection in collections:
        saved = out / collection / "prove.json"
        if saved.is_file():
            for c in json.loads(saved.read_text())["comparisons"]:
                if c["against"] == "naive":
                    per.setdefault(c["arm"], {})[collection] = c
    ran = [c for c in collections if any(c in cells for cells in per.values())]
    head = "| arm | " + " | ".join(ran) + " | mean | wins | losses |"
    lines = [head, "|---" * (len(ran) + 4) + "|"]
    mark = {"win": "*", "loss": "-", "level": ""}
    for arm, cells in per.items():
        diffs = [100 * cells[c]["diff"] for c in ran if c in cells]
        row = [f"{100 * cells[c]['diff']:+.2f}{mark[cells[c]['verdict']]}" if c in cells else "" for c in ran]
        verdicts = [cells[c]["verdict"] for c in cells]
        lines.append(f"| {arm} | " + " | ".join(row) + f" | {sum(diffs) / len(diffs):+.2f} | "
                     f"{verdicts.count('win')} | {verdicts.count('loss')} |")
    return "\n".join(lines)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=Path("bench-proof"))
    parser.add_argument("--only", help=f"comma-separated collections (of {', '.join(COLLECTIONS)})")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--nfcorpus-pairs", type=int, default=20_000)
    parser.add_argument("--bf16", action="store_true", help="train and evaluate in bf16 (default: the protocol's fp32)")
    parser.add_argument("--jobs", type=int, default=1, help="collections proved at once")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS")
    parser.add_argument("--train-teacher", metavar="FLAGS", help="train a teacher first ({teacher} in a variant)")
    parser.add_argument("--cross-fit", type=int, metavar="K",
                        help="deal one labelled set's judged queries into K folds, each scored by the arms trained "
                             "on the others (collections with qrels_all.tsv, and cranfield)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    todo = jobs(args.datasets, args.out, only, args.seeds, args.nfcorpus_pairs, args.bf16, variants(args.variant),
                args.train_teacher, args.cross_fit)
    failed = run_all(todo, max(1, args.jobs), args.out / "logs")
    tables = [f"## {c}\n\n```\n{(args.out / c / 'table.txt').read_text().rstrip()}\n```\n" for c in todo
              if (args.out / c / "table.txt").is_file()]
    tables.append(f"## Paired nDCG@10 difference from naive, points\n\n{summary(args.out, list(todo))}\n")
    (args.out / "tables.md").write_text("\n".join(tables))
    print("\n" + "\n".join(tables))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
