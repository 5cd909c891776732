"""The proof table of docs/proof.md: `hnm prove` on SciFact (train -> test) and on NFCorpus (train, sampled -> test),
seeds 0, 1, 2, the protocol's recipe (all-MiniLM-L6-v2, MNRL, 1 epoch, batch 32, lr 2e-5, warmup 10%), arms zero,
pairs, naive and hnm at the current defaults with 3 negatives per pair.

    python bench/bench_prove.py [--datasets ../shared/datasets] [--out bench-proof] [--only scifact]
                                [--nfcorpus-pairs 20000] [--seeds 0,1,2] [-- extra hnm prove flags]

Each arm takes ~25-35 minutes on two CPU cores with MiniLM (run it in the background, or on a GPU). Each proof folder
(OUT/scifact, OUT/nfcorpus) caches its arms by training file, base model, recipe and seed, so a rerun, or a rerun
with more seeds or other curation flags, trains only what it lacks. The tables are printed at the end and stay in
OUT/*/table.txt and prove.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout that was not pip-installed
from hnm_core.cli import main  # noqa: E402


def commands(datasets: Path, out: Path, seeds: str, nfcorpus_pairs: int, extra: list[str]) -> dict[str, list[str]]:
    """The `hnm prove` argument lists of the two proofs."""
    common = ["--train-split", "train", "--test-split", "test", "--negatives", "3", "--seeds", seeds, *extra]
    return {
        "scifact": ["prove", str(datasets / "scifact"), "--out", str(out / "scifact"), *common],
        # NFCorpus train has ~110k (query, positive) pairs: every arm trains on the same seeded sample of them.
        "nfcorpus": ["prove", str(datasets / "nfcorpus"), "--out", str(out / "nfcorpus"), "--max-pairs",
                     str(nfcorpus_pairs), *common],
    }


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=Path("bench-proof"))
    parser.add_argument("--only", choices=("scifact", "nfcorpus"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--nfcorpus-pairs", type=int, default=20_000)
    args, extra = parser.parse_known_args()
    extra = [flag for flag in extra if flag != "--"]
    todo = commands(args.datasets, args.out, args.seeds, args.nfcorpus_pairs, extra)
    for name, argv in todo.items():
        if args.only in (None, name):
            print("hnm " + " ".join(argv), flush=True)
            if main(argv) != 0:
                return 2
    for name in todo:
        table = args.out / name / "table.txt"
        if table.is_file():
            print(f"\n{name}\n{table.read_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
