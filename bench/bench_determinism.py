"""Same command, same bytes: `hnm mine` on one collection, run clean, on a busy machine, killed and resumed, and over
a damaged cache, each compared file by file with the clean run's output.

    python bench/bench_determinism.py [DATA] [--work DIR] [--kill-after 20] [-- extra hnm mine flags]

Runs (each with a cache of its own, so each computes everything it does not find intact):
- clean: one run on an idle machine;
- busy: the same command while two processes keep both cores busy (slices are then saved every batch or so);
- killed: killed with SIGKILL after `--kill-after` seconds, then run again on the same cache;
- zeroed / flipped / truncated: a copy of the clean run's cache with 64 KiB of the document embeddings zeroed,
  bytes flipped in them, or the file cut short; hnm reports the damage, computes it again, and must export the same.
Manifests are compared without their time, cache folder and command line (which name each run's folders). Prints one row per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout that was not pip-installed
from hnm_core.manifest import comparable_files  # noqa: E402

HNM = [sys.executable, "-m", "hnm_core.cli"]


def mine(data: Path, out: Path, cache: Path, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*HNM, "mine", str(data), "--out", str(out), "--cache-dir", str(cache), "--quiet",
                             "--overwrite", *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"hnm mine failed ({proc.returncode}): {err.strip()}")


def damage(cache: Path, how: str) -> Path:
    """Damage the cached document embeddings (the largest embeddings.npy) of `cache`; returns the file."""
    target = max(cache.glob("embeddings/*/embeddings.npy"), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    if how == "zeroed":
        data[middle : middle + 65536] = bytes(min(65536, len(data) - middle))
    elif how == "flipped":
        for at in range(middle, min(len(data), middle + 4096), 97):
            data[at] ^= 0xFF
    else:
        data = data[:middle]
    target.write_bytes(bytes(data))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", default=ROOT / "sample_data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hnm-determinism"))
    parser.add_argument("--kill-after", type=float, default=20.0)
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    marker = args.work / ".bench-determinism"  # only a folder this script made is ever cleared
    if args.work.exists() and any(args.work.iterdir()) and not marker.is_file():
        raise SystemExit(f"{args.work} is not empty and was not made by this script. Fix: pass another --work")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    marker.touch()
    rows = []

    def compare(name: str, out: Path, seconds: float, note: str = "") -> None:
        got, want = comparable_files(out), comparable_files(args.work / "clean")
        same = sum(got.get(k) == v for k, v in want.items())
        differ = sorted(k for k in want if got.get(k) != want[k]) + sorted(set(got) - set(want))
        rows.append((name, seconds, f"{same}/{len(want)}", ", ".join(differ) or "-", note))

    began = time.perf_counter()
    finish(mine(args.data, args.work / "clean", args.work / "c-clean", extra))
    rows.append(("clean", time.perf_counter() - began, "-", "-", ""))

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        began = time.perf_counter()
        finish(mine(args.data, args.work / "busy", args.work / "c-busy", extra))
        compare("busy (2 burners)", args.work / "busy", time.perf_counter() - began)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()

    began = time.perf_counter()
    proc = mine(args.data, args.work / "killed", args.work / "c-killed", extra)
    try:
        proc.wait(timeout=args.kill_after)
        note = "finished before the kill"
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        note = f"SIGKILL at {args.kill_after:.0f} s"
        finish(mine(args.data, args.work / "killed", args.work / "c-killed", extra))
    compare("killed + resumed", args.work / "killed", time.perf_counter() - began, note)

    for how in ("zeroed", "flipped", "truncated"):
        cache = args.work / f"c-{how}"
        shutil.copytree(args.work / "c-clean", cache)
        target = damage(cache, how)
        began = time.perf_counter()
        proc = mine(args.data, args.work / how, cache, extra)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"hnm mine failed over a {how} cache: {err.strip()}")
        reported = "damage reported" if target.name in err or "damaged cache" in err else "damage NOT reported"
        compare(f"{how} cache", args.work / how, time.perf_counter() - began, reported)

    print(f"hnm mine {args.data} {' '.join(extra)}".rstrip())
    print(f"{'run':<18} {'seconds':>8} {'same files':>10}  differing / note")
    for name, seconds, same, differ, note in rows:
        print(f"{name:<18} {seconds:8.1f} {same:>10}  {differ}{'; ' + note if note else ''}")


if __name__ == "__main__":
    main()
