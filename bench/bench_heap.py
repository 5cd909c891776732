"""What reusing the heap buys (hnm_core/models/memory.py, reusing_heap): one training and one encoding, each run in a
fresh process twice, once with glibc's defaults (HNM_REUSE_HEAP=0) and once as hnm runs them. Prints wall and kernel
seconds, page faults and peak resident memory of each process, and what it computed (the training's mean loss, the
embeddings' digest), which must agree between the two.

    python bench/bench_heap.py --train EXPORT/ntuple.parquet [--rows 160] [--batch 16]
    python bench/bench_heap.py --encode ../shared/datasets/scifact [--docs 768]

The figures of docs/proof.md ("Where a training's CPU time went"): --train on the NFCorpus median variant's ntuple
export, --encode on SciFact, OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENCODE = """
import hashlib, sys
from hnm_core.data import load_collection
from hnm_core.models.loading import load_bi_encoder
from hnm_core.retrieve.dense import batch_order, encode_batches
collection = load_collection(sys.argv[1])
texts = list(collection.doc_texts)
texts = [texts[i] for i in batch_order(texts)[: int(sys.argv[2])]]
vectors = encode_batches(load_bi_encoder(), texts, prompt="", batch_size=64)
print("embeddings", hashlib.sha1(vectors.tobytes()).hexdigest()[:16])
"""

SETTINGS = {"glibc's defaults (HNM_REUSE_HEAP=0)": {"HNM_REUSE_HEAP": "0"}, "reusing the heap": {"HNM_REUSE_HEAP": "1"}}


def measured(command: list[str], env: dict[str, str]) -> tuple[str, float, os.struct_rusage]:
    """Run `command` with `env` added; its output, wall seconds and resource usage (os.wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-2000:]}")
    return text, time.perf_counter() - started, usage


def table(name: str, command: list[str], result: str) -> None:
    print(f"\n{name}\n| glibc | wall s | kernel s | page faults | peak resident | {result} |")
    print("|---|---|---|---|---|---|")
    for label, env in SETTINGS.items():
        text, wall, usage = measured(command, env)
        found = re.findall(rf"{re.escape(result)}[ :]+([0-9a-f.]+)", text)
        print(f"| {label} | {wall:.1f} | {usage.ru_stime:.1f} | {usage.ru_minflt:,} | {usage.ru_maxrss / 2**20:.1f} GB | "
              f"{found[-1] if found else '?'} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="an ntuple export to train on")
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--encode", type=Path, help="a collection whose longest documents are encoded")
    parser.add_argument("--docs", type=int, default=768)
    args = parser.parse_args()
    if not (args.train or args.encode):
        parser.error("give --train, --encode or both")
    if args.train:
        with tempfile.TemporaryDirectory(prefix="hnm-bench-heap-") as scratch:
            table(f"hnm train {args.train}: {args.rows} rows in batches of {args.batch}, bf16",
                  [sys.executable, "-m", "hnm_core.cli", "train", str(args.train), "--out", f"{scratch}/model",
                   "--overwrite", "--max-pairs", str(args.rows), "--train-batch-size", str(args.batch), "--seed", "0",
                   "--train-precision", "bf16", "--quiet"], "mean loss")
    if args.encode:
        table(f"encode_batches: the longest {args.docs} documents of {args.encode}, batches of 64",
              [sys.executable, "-c", ENCODE, str(args.encode), str(args.docs)], "embeddings")


if __name__ == "__main__":
    main()
