"""Output folders (hnm_core/outputs/folder.py) through the CLI and the writers: what --overwrite may touch, --out checked
before any work, kill -9 during an export, and the recovery of an output its run did not finish."""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hnm_core.cli import main
from hnm_core.curate.rules import curate
from hnm_core.errors import ExportError
from hnm_core.export.formats import export
from hnm_core.outputs.marker import MARKER, read_marker
from hnm_core.pool import load_pool, save_pool

from .test_curate import pool_frame
from .test_export import PARAMS, make_pool, rows

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture
def flags(tiny_bi_encoder_dir, tmp_path):
    """A fast `hnm mine`: BM25 candidates, the tiny fixture model as teacher, a private cache."""
    return ["--sources", "bm25", "--teacher-model", str(tiny_bi_encoder_dir), "--precision", "fp32",
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]


@pytest.fixture
def saved_pool(tmp_path) -> Path:
    """The tiny inline pool of test_export, saved as `hnm curate` reads it."""
    return save_pool(make_pool(pool_frame(rows())), tmp_path / "saved-pool")


def pool_flags(flags: list[str]) -> list[str]:
    """`flags` without the teacher, for `hnm pool`."""
    at = flags.index("--teacher-model")
    return flags[:at] + flags[at + 2:]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def read_only(monkeypatch):
    """make(folder): `folder` becomes read-only, for root too (whom chmod does not stop): the OS calls that create,
    rename or remove an entry in it fail with PermissionError. known=False leaves os.access saying it is writable,
    as for a folder that turns read-only while a run works."""
    made: list[Path] = []
    known: set[Path] = set()
    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "rename", "rmdir", "unlink", "access")}

    def in_one(*paths) -> bool:
        return any(Path(os.path.abspath(path)).parent in made for path in paths)

    def refuse(name, check):
        def call(*args, **kwargs):
            if check(*args):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(args[0]))
            return real[name](*args, **kwargs)
        monkeypatch.setattr(os, name, call)

    refuse("open", lambda path, flags, *_: bool(flags & os.O_CREAT) and in_one(path))
    for name in ("mkdir", "rmdir", "unlink"):
        refuse(name, lambda path, *_: in_one(path))
    for name in ("replace", "rename"):
        refuse(name, lambda src, dst, *_: in_one(src, dst))
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: not (mode & os.W_OK and Path(path) in known)
                        and real["access"](path, mode, **kwargs))

    def make(folder: Path, *, known_to_access: bool = True) -> None:
        folder.chmod(0o555)
        made.append(folder)
        if known_to_access:
            known.add(folder)

    yield make
    for folder in made:
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------------------------------
# What --overwrite may touch


def test_overwrite_keeps_the_input_and_files_hnm_did_not_write(flags, tmp_path, capsys):
    data = tmp_path / "data_copy"
    shutil.copytree(SAMPLE, data)
    corpus = snapshot(data)

    # `hnm mine data_copy --out data_copy --overwrite` used to delete the corpus, queries and qrels
    assert main(["mine", str(data), "--out", str(data), "--overwrite", *flags]) == 2
    assert "is the input" in one_line(capsys)
    assert snapshot(data) == corpus

    run = tmp_path / "run3"
    assert main(["mine", str(data), "--out", str(run), "--formats", "triplet,pool", *flags]) == 0
    (run / "notes.txt").write_text("my notes")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "model.bin").write_bytes(b"\x00weights")
    (run / "pool" / "README.md").write_text("why this pool")
    capsys.readouterr()

    # `hnm curate run3 --out run3 --overwrite` used to delete run3/pool, so run3 could never be re-curated
    before = snapshot(run)
    assert main(["curate", str(run), "--out", str(run), "--overwrite", "--quiet"]) == 2
    assert "contains the input" in one_line(capsys)
    # `hnm pool --out <an earlier export> --overwrite` used to replace the export's manifest and labelled pool
    assert main(["pool", str(data), "--out", str(run), "--overwrite", *pool_flags(flags)]) == 2
    assert "holds an hnm export, not a pool" in one_line(capsys)
    assert snapshot(run) == before

    # replacing the run removes what hnm wrote (triplet.parquet, pool.parquet, the old pool) and nothing else
    assert main(["mine", str(data), "--out", str(run), "--formats", "ntuple", "--overwrite", *flags]) == 0
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "checkpoints", "manifest.json", "notes.txt",
                                                     "ntuple.parquet", "pool"]
    assert (run / "notes.txt").read_text() == "my notes"
    assert (run / "checkpoints" / "model.bin").read_bytes() == b"\x00weights"
    assert (run / "pool" / "README.md").read_text() == "why this pool"
    assert read_marker(run).complete and read_marker(run / "pool").complete
    assert len(load_pool(run / "pool").frame) > 0
    assert snapshot(data) == corpus
    # and the run can be re-curated
    assert main(["curate", str(run), "--out", str(tmp_path / "run4"), "--quiet"]) == 0


def test_a_folder_hnm_did_not_write_is_refused_even_with_overwrite(saved_pool, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(ExportError, match=f"has no {MARKER}.*even with --overwrite. Fix: choose a new or empty"):
        export(load_pool(saved_pool), curate(load_pool(saved_pool).frame, PARAMS), mine, overwrite=True)
    assert main(["curate", str(saved_pool), "--out", str(mine), "--overwrite", "--quiet"]) == 2
    assert str(mine) in one_line(capsys)
    assert snapshot(mine) == {"notes.txt": b"x"}

    # a marker edited to list a path outside its folder is not trusted: nothing is deleted
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (mine / MARKER).write_text(json.dumps({"kind": "export", "complete": True, "files": ["../victim.txt"]}))
    assert main(["curate", str(saved_pool), "--out", str(mine), "--overwrite", "--quiet"]) == 2
    assert "is not a marker hnm wrote" in one_line(capsys)
    assert victim.read_text() == "keep" and (mine / "notes.txt").exists()


def test_overwrite_replaces_only_an_output_of_the_same_kind(saved_pool, tmp_path, capsys):
    pool = load_pool(saved_pool)
    out = save_pool(pool, tmp_path / "p")
    with pytest.raises(ExportError, match="holds an hnm pool, not an export"):
        export(pool, curate(pool.frame, PARAMS), out, overwrite=True)
    assert main(["curate", str(saved_pool), "--out", str(tmp_path / "e"), "--quiet"]) == 0
    assert main(["curate", str(saved_pool), "--out", str(tmp_path / "e"), "--quiet"]) == 2
    assert "pass --overwrite" in one_line(capsys)
    assert main(["curate", str(saved_pool), "--out", str(tmp_path / "e"), "--overwrite", "--quiet"]) == 0


@pytest.mark.parametrize("command", ["pool", "mine", "audit"])
def test_out_equal_to_inside_or_around_the_input_is_refused(command, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    corpus = snapshot(data)
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    cases = [(data, "is the input"), (tmp_path / "link", "is the input"), (data / "round1", "lies inside the input"),
             (tmp_path, "contains the input")]
    for out, why in cases:
        for overwrite in ([], ["--overwrite"]):
            assert main([command, str(data), "--out", str(out), *overwrite, "--sources", "bm25", "--quiet"]) == 2
            err = one_line(capsys)
            assert why in err and "Fix: choose an --out folder outside" in err
    assert snapshot(data) == corpus and not (data / "round1").exists()
    # a pairs file as input: a folder that holds it is refused too
    pairs = tmp_path / "pairs" / "train.jsonl"
    pairs.parent.mkdir()
    pairs.write_text('{"query": "a", "positive": "b"}\n')
    assert main([command, str(pairs), "--out", str(pairs.parent), "--overwrite", "--sources", "bm25", "--quiet"]) == 2
    assert "contains the input" in one_line(capsys)


def test_curate_out_inside_the_pool_it_reads_is_refused(saved_pool, capsys):
    before = snapshot(saved_pool)
    for out in (saved_pool, saved_pool / "round2"):
        assert main(["curate", str(saved_pool), "--out", str(out), "--overwrite", "--quiet"]) == 2
        assert "the input" in one_line(capsys)
    assert snapshot(saved_pool) == before


# ---------------------------------------------------------------------------------------------------------------------
# --out checked before any work


@pytest.mark.parametrize("command", ["pool", "mine", "curate", "audit"])
def test_out_pointing_at_a_file_is_one_line(command, saved_pool, tmp_path, capsys):
    taken = tmp_path / "results.txt"
    taken.write_text("keep")
    source = saved_pool if command == "curate" else SAMPLE
    for out, why in ((taken, "is a file"), (taken / "round1", f"cannot be created: {taken} is a file")):
        assert main([command, str(source), "--out", str(out), "--quiet"]) == 2
        err = one_line(capsys)
        assert why in err and "Fix: choose a folder path for --out" in err
    assert taken.read_text() == "keep"


def test_the_hnm_command_exits_2_without_a_traceback(tmp_path):
    taken = tmp_path / "results.txt"
    taken.write_text("keep")
    run = subprocess.run([sys.executable, "-m", "hnm_core.cli", "mine", str(SAMPLE), "--out", str(taken)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [f"hnm mine: error: {taken} is a file. Fix: choose a folder path for "
                                               "--out (a new or empty folder)"]


def test_out_is_checked_before_the_data_is_read_or_anything_mined(flags, saved_pool, tmp_path, capsys):
    cache = tmp_path / "cache"
    # the data is broken too: the --out error comes first, so the data was not read
    broken = tmp_path / "pairs.jsonl"
    broken.write_text('{"query": "a", "positive": \n')
    taken = tmp_path / "results.txt"
    taken.write_text("keep")
    assert main(["mine", str(broken), "--out", str(taken), *flags]) == 2
    err = one_line(capsys)
    assert "results.txt is a file" in err and "pairs.jsonl" not in err

    started = time.perf_counter()
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "run"), *flags]) == 0
    mining = time.perf_counter() - started
    assert cache.exists()  # mining fills the cache
    shutil.rmtree(cache)
    earlier_pool = save_pool(load_pool(saved_pool), tmp_path / "p")
    # an earlier export or pool without --overwrite, and an output of another kind: refused before any work
    for command, out in (("mine", tmp_path / "run"), ("pool", earlier_pool), ("audit", tmp_path / "run")):
        capsys.readouterr()
        started = time.perf_counter()
        given = pool_flags(flags) if command == "pool" else flags
        assert main([command, str(SAMPLE), "--out", str(out), *given]) == 2
        refused = time.perf_counter() - started
        assert "--overwrite" in one_line(capsys)
        assert not cache.exists() and refused < mining / 4


def test_an_out_hnm_cannot_write_is_named_before_any_work(flags, tmp_path, capsys, read_only):
    cache = tmp_path / "cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(empty)
    read_only(locked)
    # an empty folder used to be blamed, after the whole run, on "another run writing there?"
    for out, why in ((empty, f"{empty} is not writable"),
                     (locked / "round1", f"{locked / 'round1'} cannot be created: {locked} is not writable")):
        assert main(["mine", str(SAMPLE), "--out", str(out), *flags]) == 2
        err = one_line(capsys)
        assert why in err and "another run" not in err and "Fix: make it writable" in err
    assert not cache.exists() and list(empty.iterdir()) == [] and list(locked.iterdir()) == []


def test_an_out_that_turns_read_only_during_the_run_is_named_as_such(saved_pool, tmp_path, read_only):
    out = tmp_path / "round"
    out.mkdir()
    read_only(out, known_to_access=False)  # passes the check before the work, then refuses the files
    pool = load_pool(saved_pool)
    with pytest.raises(ExportError, match=rf"^{out} is not writable \(Permission denied\)\. Fix: make it writable"):
        export(pool, curate(pool.frame, PARAMS), out, formats="triplet")
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []


HOLDER = """
import sys
from hnm_core.outputs.lock import claim
with claim(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_the_same_out_is_refused_before_any_work(flags, tmp_path, capsys):
    out = tmp_path / "run"
    cache = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "x" / ".." / "run")], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "holding\n"  # a first run, mining into `out` (the same folder, spelt else)
        # with a cold cache the second run used to wait for the first's embeddings, mine, and only then be refused
        assert main(["mine", str(SAMPLE), "--out", str(out), *flags]) == 2
        err = one_line(capsys)
        assert f"{out} is being written by another hnm run" in err and "Fix: wait for it to finish" in err
        assert not cache.exists() and not out.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert main(["pool", str(SAMPLE), "--out", str(out), *pool_flags(flags)]) == 0  # released with its holder


# ---------------------------------------------------------------------------------------------------------------------
# A full disk: one line naming the folder; nothing half-written, the earlier output as it was

def no_space(path: Path, written: bytes = b"PAR1 half a file") -> None:
    """What a full disk does to a write: part of the file lands, then ENOSPC."""
    Path(path).write_bytes(written)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_an_export_leaves_the_earlier_one_and_says_so(saved_pool, tmp_path, capsys, monkeypatch):
    writer = importlib.import_module("hnm_core.export.formats")

    out = tmp_path / "round"
    argv = ["curate", str(saved_pool), "--out", str(out), "--formats", "triplet,pool", "--quiet", *RULES_OFF]
    assert main(argv) == 0
    before = snapshot(out)
    monkeypatch.setattr(writer, "_write", lambda table, path: no_space(path))
    capsys.readouterr()
    assert main([*argv, "--negatives", "1", "--overwrite"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"hnm curate: error: {out}: no space left on the device (")
    assert "the write had put" in err and "there when it filled" in err
    assert f"Nothing was left half-written: {out} is as it was" in err and "Fix: free space on that disk" in err
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_a_full_disk_while_saving_a_pool_leaves_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "pool"
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda frame, path, **_: no_space(path))
    assert main(["pool", str(SAMPLE), "--out", str(out), "--sources", "bm25", "--cache-dir", str(tmp_path / "cache"),
                 "--quiet"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"hnm pool: error: {out}: no space left on the device") and "Fix: " in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_while_caching_embeddings_leaves_no_half_file(tiny_bi_encoder_dir, tmp_path, capsys, monkeypatch):
    import numpy as np

    cache = tmp_path / "cache"

    def save(file, array, **_):
        file.write(b"\x93NUMPY half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", save)
    assert main(["pool", str(SAMPLE), "--out", str(tmp_path / "out"), "--sources", "dense", "--model",
                 str(tiny_bi_encoder_dir), "--precision", "fp32", "--cache-dir", str(cache), "--quiet"]) == 2
    said = capsys.readouterr().err
    err = said.strip().splitlines()[-1]  # after transformers' own "Loading weights" bar
    assert "Traceback" not in said
    assert err.startswith(f"hnm pool: error: {cache}") and "no space left on the device" in err
    assert "Nothing was left half-written" in err and "Fix: free space on that disk" in err
    assert not [p for p in cache.rglob("*") if p.is_file() and p.suffix in (".tmp", ".npy")]
    assert not (tmp_path / "out").exists()


def test_a_full_disk_anywhere_else_is_one_line_too(tmp_path, capsys, monkeypatch):
    import hnm_core.pool

    def build_pool(*args, **kwargs):  # a folder the cache makes, say: mkdir fails on a full disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "cache" / "embeddings" / "k"))

    monkeypatch.setattr(hnm_core.pool, "build_pool", build_pool)
    assert main(["pool", str(SAMPLE), "--out", str(tmp_path / "out"), "--sources", "bm25", "--quiet"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"hnm pool: error: {tmp_path / 'cache' / 'embeddings' / 'k'}: no space left on the device")
    assert "Fix: free space on that disk" in err


# ---------------------------------------------------------------------------------------------------------------------
# Atomic exports: kill -9 inside an export, then the same command again without --overwrite

# Runs `hnm ARGS...` in a child that sends itself SIGKILL at POINT:
#   writing       after the first data file of the export is written (second `_write` call)
#   placing       with the whole export written in its hidden folder, before anything at --out changes
#   replace:N     at the N-th rename while the new export is put in place
#   saving-pool   `hnm mine`: after the export is in place, before its pool/ is saved
CHILD = """
import importlib, os, signal, sys
cli, export, outdir, pool = (importlib.import_module(f"hnm_core.{n}")
                              for n in ("cli.main", "export.formats", "outputs.folder", "pool"))

def kill_on_call(module, name, nth):
    real = getattr(module, name)
    calls = 0
    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(module, name, wrapper)

point = sys.argv[1]
if point == "writing":
    kill_on_call(export, "_write", 2)
elif point == "placing":
    kill_on_call(outdir, "_put_in_place", 1)
elif point.startswith("replace:"):
    place = outdir._put_in_place
    def placing(*args):
        kill_on_call(os, "replace", int(point.split(":")[1]))
        return place(*args)
    outdir._put_in_place = placing
elif point == "saving-pool":
    kill_on_call(pool, "save_pool", 1)
sys.exit(cli.main(sys.argv[2:]))
"""


RULES_OFF = ["--ceiling", "off", "--relative-margin", "off", "--absolute-margin", "off", "--near-dup", "off",
             "--skip-n", "0", "--no-cluster-rule", "--floor", "off"]  # so the tiny pool's export has rows


def run_killed(point: str, argv: list[str], tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, point, *argv], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "HNM_CACHE_DIR": str(tmp_path / "cache")})
    assert child.returncode == -signal.SIGKILL, child.stderr  # the kill point was reached


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".old")))


def same_export(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".parquet", ".jsonl"))
    assert names == sorted(p.name for p in b.iterdir() if p.suffix in (".parquet", ".jsonl")) and names
    assert len(pd.read_parquet(a / "triplet.parquet")) == 9  # TRIPLETS of test_export
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name))
    manifest_a, manifest_b = (json.loads((folder / "manifest.json").read_text()) for folder in (a, b))
    assert manifest_a.pop("created_utc") and manifest_b.pop("created_utc") and manifest_a == manifest_b
    assert read_marker(a).complete and set(read_marker(a).files) >= {*names, "manifest.json"}


@pytest.mark.parametrize(("earlier", "point", "after_kill"), [
    (None, "writing", "absent"),  # nothing at --out yet
    (None, "placing", "absent"),
    (None, "replace:1", "absent"),
    ("empty", "replace:2", "incomplete"),  # an empty folder someone made is filled in place, marker first
    ("export", "writing", "earlier"),  # the earlier export is untouched until the new one is complete
    ("export", "replace:2", "absent"),  # the earlier export moved aside, the new one not yet renamed in
    ("export+notes", "replace:3", "incomplete"),  # files moved in one by one beside notes.txt
])
def test_kill_9_during_an_export_then_the_rerun_completes_it(earlier, point, after_kill, saved_pool, tmp_path):
    out = tmp_path / "round"
    reference = tmp_path / "reference"
    argv = ["curate", str(saved_pool), "--out", str(out), "--negatives", "2", "--formats", "triplet,pool", "--quiet",
            *RULES_OFF]
    assert main([*argv[:3], str(reference), *argv[4:]]) == 0
    if earlier == "empty":
        out.mkdir()
    elif earlier:
        assert main([*argv[:5], "1", "--formats", "ntuple", "--quiet"]) == 0
        if earlier == "export+notes":
            (out / "notes.txt").write_text("mine")
    before = snapshot(out) if earlier else None

    run_killed(point, argv + (["--overwrite"] if earlier else []), tmp_path)
    assert leftovers(tmp_path)  # kill -9 leaves the hidden folder behind: the rerun must clean it
    if after_kill == "absent":
        assert not out.exists()
    elif after_kill == "earlier":
        assert snapshot(out) == before  # still the whole earlier export
        assert main(argv) == 2 and snapshot(out) == before  # and a complete export is not replaced without asking
        argv.append("--overwrite")
    else:
        assert not read_marker(out).complete  # half written, and says so

    assert main(argv) == 0  # the same command; without --overwrite unless a complete export survived the kill
    same_export(out, reference)
    assert leftovers(tmp_path) == []
    if earlier == "export+notes":
        assert (out / "notes.txt").read_text() == "mine"


def test_a_mine_interrupted_before_its_pool_was_saved_is_replaced_without_overwrite(flags, tmp_path, monkeypatch,
                                                                                    capsys):
    import hnm_core.pool

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the export is in place, before its pool/ is saved

    run = tmp_path / "run"
    argv = ["mine", str(SAMPLE), "--out", str(run), "--formats", "triplet", *flags]
    with monkeypatch.context() as patch:
        patch.setattr(hnm_core.pool, "save_pool", interrupted)
        assert main(argv) == 130
    _recovers_without_overwrite(run, argv, tmp_path, capsys)


def _recovers_without_overwrite(run, argv, tmp_path, capsys) -> None:
    """`run` holds an export marked incomplete, without its pool/: the same command replaces it without --overwrite
    (it used to block the rerun with "exists and is not empty"), and the result can be re-curated."""
    marker = read_marker(run)
    assert marker.kind == "export" and not marker.complete and "pool" in marker.files
    assert (run / "triplet.parquet").exists() and not (run / "pool").exists()
    assert main(argv) == 0
    assert read_marker(run).complete and read_marker(run / "pool").complete
    assert main(["curate", str(run), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(argv) == 2 and "pass --overwrite" in one_line(capsys)  # a complete one is not replaced silently


@pytest.mark.slow
def test_a_mine_killed_before_its_pool_was_saved_is_replaced_without_overwrite(flags, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["mine", str(SAMPLE), "--out", str(run), "--formats", "triplet", *flags]
    run_killed("saving-pool", argv, tmp_path)
    _recovers_without_overwrite(run, argv, tmp_path, capsys)


WRITING = json.dumps({"kind": "export", "complete": False, "files": []})  # what a write's hidden folder starts with


def test_leftovers_of_killed_writes_are_cleaned_and_live_ones_kept(saved_pool, tmp_path):
    dead = 2 ** 22 + 1  # above the default pid_max of 2**22: no such process
    for name in (f".round.{dead}.abcd1234.tmp", ".round.abcd_123.tmp", f".round.{os.getpid()}.abcd1234.tmp",
                 ".round2.abcd1234.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "triplet.parquet").write_bytes(b"partial")
        (tmp_path / name / MARKER).write_text(WRITING)
    (tmp_path / f".round.{dead}.empty123.tmp").mkdir()  # killed before its marker was written
    # an earlier output moved aside by a replace that was killed before the new one was renamed in
    aside = tmp_path / f".round.{dead}.x1y2z3w4.old" / "round"
    save_pool(load_pool(saved_pool), aside)
    (tmp_path / ".round.notes.tmp").write_text("a file of someone else's")
    assert main(["curate", str(saved_pool), "--out", str(tmp_path / "round"), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        f".round.{os.getpid()}.abcd1234.tmp",  # a write in progress (this process) keeps its folder
        ".round.notes.tmp",  # not a folder hnm made
        ".round2.abcd1234.tmp",  # another output's
    ]


def test_a_folder_of_the_user_named_like_a_leftover_is_kept(saved_pool, tmp_path):
    dead = 2 ** 22 + 1
    theirs = {f".round.{dead}.abcd1234.tmp": "thesis.tex", f".round.{dead}.x1y2z3w4.old": "round/notes.txt",
              ".round.abcd_123.tmp": "keep/me.txt"}
    for name, file in theirs.items():
        (tmp_path / name / file).parent.mkdir(parents=True)
        (tmp_path / name / file).write_text("mine")
    assert main(["curate", str(saved_pool), "--out", str(tmp_path / "round"), "--quiet"]) == 0
    for name, file in theirs.items():
        assert (tmp_path / name / file).read_text() == "mine"
