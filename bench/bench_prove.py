"""The proof tables of docs/proof.md: `hnm prove` on SciFact (train -> test) and on NFCorpus (train, sampled -> test),
the protocol's recipe (all-MiniLM-L6-v2, MNRL, 1 epoch, batch 32, lr 2e-5, warmup 10%, 3 negatives per pair), seeds
0, 1, 2, arms zero, pairs and naive, and one hnm arm per curation variant.

    python bench/bench_prove.py [--datasets ../shared/datasets] [--out bench-proof] [--only scifact]
                                [--nfcorpus-pairs 20000] [--seeds 0,1,2] [--jobs 1]
                                [--variant NAME=FLAGS ...] [--train-teacher FLAGS]

A variant is a name and the hnm prove flags of its curation, e.g. `--variant "nv=--skip-n 0 --relative-margin
0.05"`; with no --variant the table has one, `defaults`. A `scifact:` or `nfcorpus:` prefix on a variant's name runs
it on that collection only. `--train-teacher FLAGS` first trains a cross-encoder teacher on the training split of each
collection that a variant uses it on (`hnm train-teacher DATA --split train FLAGS`); a variant names it `{teacher}`:
`--variant "ce=--teacher cross-encoder --teacher-model {teacher} --skip-n 0"`.

Every proof is its own `hnm prove` process with its own folder (OUT/<collection>/base for zero, pairs and naive,
OUT/<collection>/<variant> for each hnm arm), sharing one embedding cache; `--jobs N` runs N of them at once, which
pays on a GPU, where one MiniLM fine-tune leaves most of the card idle. Each arm takes ~25-35 minutes on two CPU
cores. Proof folders cache their arms by training file, base model, recipe and seed, so a rerun trains only what it
lacks. The combined tables (mean ± spread over seeds, and each arm's difference from naive) are printed at the end
and written to OUT/tables.md.
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
COLLECTIONS = ("scifact", "nfcorpus")
METRICS = ("ndcg@10", "recall@100", "mrr@10")


def variants(specs: list[str]) -> dict[str, str]:
    """NAME=FLAGS pairs, in the order given."""
    out = {}
    for spec in specs:
        name, sep, flags = spec.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--variant {spec!r}: expected NAME=FLAGS. Fix: e.g. --variant 'nv=--skip-n 0'")
        out[name.strip()] = flags
    return out or {"defaults": ""}


def jobs(datasets: Path, out: Path, only: str | None, seeds: str, nfcorpus_pairs: int,
         named: dict[str, str], teacher: str | None) -> dict[str, list[list[str]]]:
    """Per collection, the hnm command lines to run in order: the teacher first (when asked), then every proof."""
    todo: dict[str, list[list[str]]] = {}
    for collection in COLLECTIONS:
        if only not in (None, collection):
            continue
        data, folder = datasets / collection, out / collection
        common = ["--train-split", "train", "--test-split", "test", "--negatives", "3", "--seeds", seeds,
                  "--train-precision", "fp32"]  # the protocol's (the default, auto, is bf16 where the hardware has it)
        if collection == "nfcorpus":  # ~110k (query, positive) pairs: every arm trains on the same seeded sample
            common += ["--max-pairs", str(nfcorpus_pairs)]
        mine = {name.rpartition(":")[2]: flags for name, flags in named.items()
                if name.rpartition(":")[0] in ("", collection)}
        lines = []
        if teacher is not None and any("{teacher}" in flags for flags in mine.values()):
            lines.append(["train-teacher", str(data), "--split", "train", "--out", str(folder / "teacher"),
                          *shlex.split(teacher)])
        lines.append(["prove", str(data), "--out", str(folder / "base"), "--arms", "zero,pairs,naive", *common])
        for name, flags in mine.items():
            flags = flags.replace("{teacher}", str(folder / "teacher"))
            lines.append(["prove", str(data), "--out", str(folder / name), "--arms", "hnm", *common,
                          *shlex.split(flags)])
        todo[collection] = lines
    return todo


def run_all(todo: dict[str, list[list[str]]], parallel: int, log_dir: Path) -> int:
    """Run the command lines, `parallel` at a time; a proof that uses a collection's trained teacher starts once the
    teacher is trained."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # Round robin over the collections, so the longest proofs (NFCorpus) are not all left to the end.
    queue = sorted(((c, i, line) for c, lines in todo.items() for i, line in enumerate(lines)),
                   key=lambda item: item[1])
    waiting_on: dict[str, subprocess.Popen] = {}  # collection -> its running train-teacher
    running: list[tuple[str, subprocess.Popen]] = []
    failed = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    while queue or running:
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                failed += proc.returncode != 0
                print(f"{'done' if proc.returncode == 0 else f'FAILED ({proc.returncode})'}: {name}", flush=True)
        for item in list(queue):
            collection, index, line = item
            teacher = waiting_on.get(collection)
            needs_teacher = line[0] == "prove" and any(arg.endswith(os.sep + "teacher") for arg in line)
            if len(running) >= parallel or (needs_teacher and (teacher is None or teacher.poll() is None)):
                continue
            if needs_teacher and teacher.returncode != 0:
                queue.remove(item)
                print(f"skipped (its teacher failed): hnm {shlex.join(line)}", flush=True)
                failed += 1
                continue
            queue.remove(item)
            name = f"{collection}-{index}-{line[0]}"
            log = log_dir / f"{name}.log"
            print(f"start: hnm {shlex.join(line)}  (log {log})", flush=True)
            with log.open("w") as out:  # the child writes through its own copy of the handle
                proc = subprocess.Popen([sys.executable, "-m", "hnm_core.cli", *line, "--quiet"], stdout=out,
                                        stderr=subprocess.STDOUT, env=env)
            running.append((name, proc))
            if line[0] == "train-teacher":
                waiting_on[collection] = proc
        time.sleep(1)
    return failed


def table(collection: Path, names: list[str]) -> str:
    """One markdown table: zero, pairs, naive from the base proof, then each variant's hnm arm, with the difference
    of its mean nDCG@10 from naive's."""
    rows = []
    for name in ["base", *names]:
        saved = collection / name / "prove.json"
        if saved.is_file():
            for arm in json.loads(saved.read_text())["arms"]:
                label = arm["arm"] if name == "base" else f"hnm: {name}"
                rows.append((label, arm))
    naive = next((arm["mean"]["ndcg@10"] for label, arm in rows if label == "naive"), None)
    head = "| arm | seeds | rows | " + " | ".join(METRICS) + " | nDCG@10 vs naive |"
    out = [head, "|---" * (len(METRICS) + 4) + "|"]
    for label, arm in rows:
        figures = " | ".join(f"{arm['mean'][m]:.4f} ± {arm['std'][m]:.4f}" for m in METRICS)
        delta = "" if naive is None or label == "naive" else f"{(arm['mean']['ndcg@10'] - naive) * 100:+.2f}"
        seeds = ",".join(str(s) for s in arm["seeds"])
        out.append(f"| {label} | {seeds} | {arm['rows']:,} | {figures} | {delta} |")
    return "\n".join(out)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=Path("bench-proof"))
    parser.add_argument("--only", choices=COLLECTIONS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--nfcorpus-pairs", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=1, help="hnm prove processes at once")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS")
    parser.add_argument("--train-teacher", metavar="FLAGS", help="train a cross-encoder teacher first ({teacher})")
    args = parser.parse_args()
    named = variants(args.variant)
    todo = jobs(args.datasets, args.out, args.only, args.seeds, args.nfcorpus_pairs, named, args.train_teacher)
    failed = run_all(todo, max(1, args.jobs), args.out / "logs")
    short = [name.rpartition(":")[2] for name in named]
    tables = [f"## {collection}\n\n{table(args.out / collection, short)}\n" for collection in todo]
    (args.out / "tables.md").write_text("\n".join(tables))
    print("\n" + "\n".join(tables))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
