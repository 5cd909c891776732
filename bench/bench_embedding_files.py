"""Reading bring-your-own embeddings (`--doc-embeddings FILE`): time and peak memory, .npy against Parquet.

    python bench/bench_embedding_files.py [--rows 500000] [--dim 384]

Writes `--rows` seeded random vectors of `--dim` float32 values twice into a scratch folder: a .npy in collection
order, and a Parquet file (id, vector) in shuffled order, in row groups of 50,000 rows. Each is then read by
`embedding_files.read_embeddings` into an empty cache in a fresh process, which reports the seconds and the peak of
its anonymous memory (RssAnon, polled from /proc/self/status every 20 ms; the cache's and the scratch file's memory
maps are file pages the kernel can drop, so they are not counted). Target: Parquet's peak within a few hundred MiB
of the .npy's whatever the file's size (a file read whole costs its size twice over).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout that was not pip-installed


def write_files(folder: Path, rows: int, dim: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    npy = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, 50_000):
        npy[start:start + 50_000] = rng.standard_normal((min(50_000, rows - start), dim)).astype(np.float32)
    order = rng.permutation(rows)
    with pq.ParquetWriter(folder / "vectors.parquet", pa.schema([("doc_id", pa.string()),
                                                               ("vector", pa.list_(pa.float32(), dim))])) as writer:
        for start in range(0, rows, 50_000):
            at = order[start:start + 50_000]  # the collection rows of this row group's rows
            writer.write_table(pa.table({
                "doc_id": [f"d{i}" for i in at],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(npy[at]).ravel()), dim)}))
    npy.flush()
    return folder / "vectors.npy", folder / "vectors.parquet"


def measure(path: Path, rows: int, cache: Path) -> dict:
    """Read `path` for ids d0..d{rows-1} into `cache`; seconds and peak RssAnon in MiB (run in a fresh process)."""
    from hnm_core.retrieve.embedding_files import read_embeddings

    peak = [0]

    def poll() -> None:
        while True:
            line = next(x for x in open("/proc/self/status") if x.startswith("RssAnon"))
            peak[0] = max(peak[0], int(line.split()[1]) >> 10)
            time.sleep(0.02)

    ids = tuple(f"d{i}" for i in range(rows))
    threading.Thread(target=poll, daemon=True).start()
    time.sleep(0.1)
    before = peak[0]
    start = time.perf_counter()
    got, _ = read_embeddings(path, ids, kind="document", cache_dir=cache)
    seconds = time.perf_counter() - start
    time.sleep(0.05)
    return {"seconds": seconds, "peak_mib": peak[0], "before_mib": before, "shape": list(got.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--measure", nargs=3, metavar=("PATH", "ROWS", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]), Path(args.measure[2]))))
        return
    with tempfile.TemporaryDirectory(prefix="hnm-bench-embeddings-") as scratch:
        folder = Path(scratch)
        files = write_files(folder, args.rows, args.dim)
        print(f"{args.rows:,} vectors of {args.dim} dimensions\n")
        print("| file | MB | read s | peak RssAnon MiB (before) |")
        print("|---|---|---|---|")
        for path in files:
            done = subprocess.run([sys.executable, __file__, "--measure", str(path), str(args.rows),
                                   str(folder / f"cache-{path.suffix[1:]}")], capture_output=True, text=True,
                                  check=True)
            figures = json.loads(done.stdout)
            print(f"| {path.suffix} | {path.stat().st_size / 1e6:,.0f} | {figures['seconds']:.1f} | "
                  f"{figures['peak_mib']:,} ({figures['before_mib']:,}) |")


if __name__ == "__main__":
    main()
