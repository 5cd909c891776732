"""The same exports before and after a change to the code: `hnm mine` run from two git revisions on one collection,
each with a cache of its own, and every output file compared.

    python bench/bench_same_exports.py BEFORE [AFTER] [--data DATA ...] [--work DIR] [-- extra hnm mine flags]

BEFORE and AFTER are git revisions (AFTER defaults to the working tree as it is). Each is checked out into a
worktree under --work and run as `python -m hnm_core.cli mine DATA --out ... --formats <all but hf>` with its own
embedding and score cache, so each revision computes everything itself. Manifests are compared without their time,
cache folder and command line (hnm_core.manifest.comparable_files), the rest byte for byte. Prints one row per
collection and exits 1 when a file differs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout that was not pip-installed
from hnm_core.manifest import comparable_files  # noqa: E402

FORMATS = "triplet,ntuple,ntuple_scores,labeled_pair,flag,pool"


def checkout(rev: str | None, work: Path) -> Path:
    """A worktree of `rev` under `work` (the working tree itself when rev is None)."""
    if rev is None:
        return ROOT
    tree = work / f"tree-{rev.replace('/', '_')}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                       capture_output=True)
    return tree


def mine(tree: Path, data: Path, out: Path, cache: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hnm_core.cli", "mine", str(data), "--out", str(out), "--cache-dir",
                           str(cache), "--formats", FORMATS, "--quiet", "--overwrite", *extra], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hnm mine from {tree} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default=None)
    parser.add_argument("--data", type=Path, action="append", default=None,
                        help="a collection (repeatable; default: sample_data)")
    parser.add_argument("--work", type=Path, default=Path("bench-same-exports"))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {"before": checkout(args.before, args.work), "after": checkout(args.after, args.work)}
    failed = False
    print(f"{'collection':<12} {'files':>5} {'same':>5}  {'before s':>8} {'after s':>8}  differing")
    for data in args.data or [ROOT / "sample_data"]:
        outs, seconds = {}, {}
        for side, tree in trees.items():
            run = args.work / data.name / side
            shutil.rmtree(run / "cache", ignore_errors=True)
            seconds[side] = mine(tree, data.resolve(), run / "out", run / "cache", extra)
            outs[side] = comparable_files(run / "out")
        names = sorted(set(outs["before"]) | set(outs["after"]))
        differing = [n for n in names if outs["before"].get(n) != outs["after"].get(n)]
        failed |= bool(differing)
        print(f"{data.name:<12} {len(names):>5} {len(names) - len(differing):>5}  {seconds['before']:>8.1f} "
              f"{seconds['after']:>8.1f}  {', '.join(differing) or '-'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
