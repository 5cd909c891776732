"""Output folders: every folder hnm writes (an export, a pool, an audit report, a trained model) is checked, written
and replaced here.

hnm puts a marker, `.hnm-output.json`, into each output folder it writes: the kind of output, the names it wrote
there and whether the output is complete. The marker is what makes replacing a folder safe:

- a non-empty folder without the marker is not hnm's: nothing is written into it or deleted from it, even with
  `overwrite`;
- `overwrite` replaces a folder with the marker, of the same kind, and removes only the names the marker lists;
  anything else in it (notes, checkpoints) stays;
- an output whose marker says incomplete (its run was killed before it finished) is replaced without `overwrite`;
- an output folder may not be, contain or lie inside an input of the run.

A new output is written into a hidden folder beside the target (`.NAME.PID.RANDOM.tmp`, with a marker from its
start) and renamed into place, so the target holds the old output or the new one, never half of one. Hidden folders
left by a killed run are removed at the start of the next write to the same target; a folder of that name without
hnm's marker is someone else's and stays. A full disk removes the hidden folder and says so (DiskFullError).

One run writes a target at a time (hnm_core.outputs.lock): `write_output` claims it, and the CLI claims its --out before
any work, so a second run is refused at once, not after its computation.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ExportError
from ..storage import disk_full, is_disk_full, unwritable, written_under
from .lock import claim
from .marker import MARKER, Kind, Marker, mark_tree, read_marker, write_marker

__all__ = ["refuse_inputs", "check_out", "write_output", "new_folder", "finish"]


def _resolved(path: Path) -> Path:
    """`path` with links followed; a link that cannot be followed (a loop) stays as written, for the reader to
    name in its own error."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # Python < 3.13 raises RuntimeError on a symlink loop
        return Path(os.path.abspath(path))


def refuse_inputs(out: Path, inputs: Iterable[str | Path]) -> None:
    """Raise ExportError when `out` is, contains or lies inside one of `inputs` (links followed)."""
    target = _resolved(out)
    for given in inputs:
        source = _resolved(Path(given).expanduser())
        if target == source:
            where = "is the input"
        elif source in target.parents:
            where = "lies inside the input"
        elif target in source.parents:
            where = "contains the input"
        else:
            continue
        raise ExportError(f"the output folder {out} {where} {given}, and writing or replacing it could delete the "
                          "data being read (refused with or without --overwrite). Fix: choose an --out folder "
                          f"outside {given}")


def check_out(out: str | Path, kind: Kind, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Raise ExportError unless an output of `kind` may be written at `out`; return it as a Path.

    The CLI calls this before any work, so a long run never ends on "folder exists"; the writers call it again just
    before they put their files in place. `inputs`: paths the run reads (data file or folder, pool folder).
    """
    out = Path(out).expanduser()
    refuse_inputs(out, inputs)
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == out else f"cannot be created: {path} is a file"
                raise ExportError(f"{out} {what}. Fix: choose a folder path for --out (a new or empty folder)")
            break
    stop = unwritable(out) or unwritable(out.parent)  # the files go into `out`, its hidden copy beside it
    if stop is not None:
        what = ("is not writable" if stop == out else f"cannot be created: {stop} is not writable" if not out.exists()
                else f"cannot be replaced: {stop}, where hnm writes its new copy, is not writable")
        raise ExportError(f"{out} {what}. Fix: make it writable (chmod u+w {stop}), or choose a folder you can "
                          "write to for --out")
    try:
        empty = not out.is_dir() or next(out.iterdir(), None) is None
    except OSError as error:
        raise ExportError(f"{out} cannot be listed ({error.strerror}). Fix: choose a folder you can write to "
                          "for --out") from None
    if empty:
        return out
    marker = read_marker(out)
    if marker is None:
        raise ExportError(f"{out} is not empty and has no {MARKER} (the marker hnm writes into every folder it "
                          "creates), so hnm will not write into it or delete anything in it, even with --overwrite. "
                          "Fix: choose a new or empty folder for --out")
    if marker.kind != kind:
        raise ExportError(f"{out} holds an hnm {marker.kind}, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}, and "
                          "--overwrite only replaces an output of the same kind. Fix: choose another folder for --out")
    if marker.complete and not overwrite:
        raise ExportError(f"{out} exists and is not empty (an hnm {kind} written earlier). Fix: pass --overwrite "
                          "(overwrite=True) to replace it (only the files hnm wrote there are removed), or choose "
                          "another folder")
    return out


_LEFTOVER = r"\.{name}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.(?:tmp|old)"


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) is a liveness probe only on POSIX; elsewhere keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(out: Path) -> None:
    """Remove the hidden folders that earlier writes to `out` left when they were killed (a run still in progress,
    by its process id in the name, keeps its own)."""
    pattern = re.compile(_LEFTOVER.format(name=re.escape(out.name)))
    try:
        entries = list(out.parent.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        if match.group(1) and _alive(int(match.group(1))):
            continue
        if entry.suffix == ".tmp":
            # A write in progress carries hnm's marker from its start, and everything in it is hnm's; a folder of
            # that name without one is someone else's (or empty: killed before its marker).
            if _marked(entry):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                _rmdir_if_empty(entry)
        else:
            for old in entry.iterdir():  # a replaced output moved aside: its marker says what hnm wrote
                _remove_output(old)
            _rmdir_if_empty(entry)


def _marked(folder: Path) -> bool:
    try:
        return read_marker(folder) is not None
    except ExportError:
        return False


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: something that is not hnm's is in it and stays


def _remove_listed(folder: Path, marker: Marker) -> None:
    for name in marker.files:
        path = folder / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            _remove_output(path)


def _remove_output(folder: Path) -> None:
    """Remove what hnm wrote in `folder` (the names its marker lists, recursively); a folder left holding other
    files keeps a marker listing nothing, so hnm may write there again."""
    if not folder.is_dir() or folder.is_symlink():
        return
    marker = read_marker(folder)
    if marker is None:
        return
    _remove_listed(folder, marker)
    if {p.name for p in folder.iterdir()} == {MARKER}:
        (folder / MARKER).unlink()
        folder.rmdir()
    else:
        write_marker(folder, Marker(marker.kind, (), complete=False))


@contextmanager
def write_output(out: str | Path, kind: Kind, *, overwrite: bool = False, inputs: Iterable[str | Path] = (),
                 pending: Iterable[str] = ()) -> Iterator[Path]:
    """Write an output of `kind` at `out`: the body writes its files into the yielded hidden folder; when it returns,
    the folder gets its marker and replaces `out`. If the body raises, `out` is left as it was.

    pending: names the caller adds to `out` after this (the CLI's `pool/` in an export); the output is marked
    incomplete until `finish(out)`, and a rerun replaces it without `overwrite`.
    """
    inputs = tuple(inputs)
    # Absolute and normalised, so that `--out .` or `a/..` has a real name and parent for the hidden folder.
    out = Path(os.path.abspath(check_out(out, kind, overwrite=overwrite, inputs=inputs)))
    with claim(out):
        _clean_leftovers(out)
        tmp = _hidden_folder(out)
        with _removed_on_error(tmp, out, kind):
            write_marker(tmp, Marker(kind, (), complete=False))  # so a leftover of this write is known as hnm's
            yield tmp
            _finish_write(tmp, out, kind, overwrite, inputs, tuple(pending))


@contextmanager
def new_folder(folder: str | Path, kind: Kind) -> Iterator[Path]:
    """Write a folder that must appear whole or not at all (a fold of a resumable teacher, which keeps its own
    replace rules): the body fills the yielded hidden sibling; when it returns, the sibling is renamed to `folder`
    (which must not exist); if it raises, the sibling is removed and `folder` never appears."""
    folder = Path(os.path.abspath(folder))
    tmp = _hidden_folder(folder)
    with _removed_on_error(tmp, folder, kind):
        yield tmp
        os.replace(tmp, folder)


def _hidden_folder(out: Path) -> Path:
    """A new hidden sibling of `out` named for it and this process (`_clean_leftovers` knows the name)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise ExportError(f"{out.parent} cannot be written to ({error.strerror}). Fix: choose a folder you can "
                          "write to for --out") from None


@contextmanager
def _removed_on_error(tmp: Path, out: Path, kind: Kind) -> Iterator[None]:
    """Remove the hidden folder `tmp` if the write fails; a full disk says so, naming `out`."""
    try:
        yield
    except BaseException as error:
        written = written_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(error):
            raise disk_full(out, written=written, kept=f"{out} is as it was, and the partly written {kind} was "
                                                         "removed") from None
        raise


def _finish_write(tmp: Path, out: Path, kind: Kind, overwrite: bool, inputs: tuple[str | Path, ...],
                  pending: tuple[str, ...]) -> None:
    """Mark what the body wrote into `tmp` and put it in place at `out`."""
    names = sorted(p.name for p in tmp.iterdir() if p.name != MARKER)
    for sub in tmp.iterdir():
        if sub.is_dir() and not sub.is_symlink():
            mark_tree(sub, kind)
    marker = Marker(kind, tuple(names) + pending, complete=not pending)
    write_marker(tmp, marker)
    # The folder may have changed during the work (another run, a person): check it again.
    check_out(out, kind, overwrite=overwrite, inputs=inputs)
    try:
        _put_in_place(tmp, out, names, marker)
    except OSError as error:
        if is_disk_full(error):
            raise
        if isinstance(error, PermissionError):  # it turned read-only during the work
            where = Path(error.filename).parent if error.filename else out
            what = "is not writable" if where == out else f"could not be put in place: {where} is not writable"
            raise ExportError(f"{out} {what} ({error.strerror}). Fix: make it writable (chmod u+w {where}), or "
                              "choose a folder you can write to for --out") from None
        raise ExportError(f"{out} could not be put in place ({error.strerror}); it changed while hnm was "
                          "writing (another run writing there?). Fix: run again, or choose another folder for "
                          "--out") from None


def _put_in_place(tmp: Path, out: Path, names: list[str], new: Marker) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = read_marker(out)  # None: an empty folder (check_out refused any other folder without a marker)
    foreign = sorted(p.name for p in out.iterdir() if p.name != MARKER and (old is None or p.name not in old.files))
    if old is not None and not foreign:
        # Only hnm's files: move the old output aside and rename the new one in, so `out` never holds a mixture.
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".old", dir=out.parent))
        os.replace(out, aside / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(aside / out.name, out)
            raise
        finally:
            _remove_output(aside / out.name)
            _rmdir_if_empty(aside)
        return
    clash = _clashes(tmp, out)
    if clash:
        raise ExportError(f"{clash[0]} was not written by hnm and the new {new.kind} has a file of that name. "
                          f"Fix: move it out of {out}, or choose another folder for --out")
    # The folder stays (it holds files that are not hnm's, or is an empty folder someone made, perhaps a mount
    # point), so the new files go in one by one. Until the last, the marker says incomplete and lists old and new
    # names, so a kill here leaves an output that the next run replaces.
    listed = (old.files if old else ()) + new.files
    write_marker(out, Marker(new.kind, tuple(dict.fromkeys(listed)), complete=False))
    if old is not None:
        _remove_listed(out, old)
    for name in names:
        _move_into(tmp / name, out / name)
    os.replace(tmp / MARKER, out / MARKER)
    tmp.rmdir()


def _clashes(new: Path, old: Path) -> list[Path]:
    """Paths under `old` that files of `new` would replace and that hnm did not write, at every depth."""
    if not old.is_dir() or old.is_symlink():
        return []
    marker = read_marker(old)
    ours = set(marker.files) if marker else set()
    found: list[Path] = []
    for child in new.iterdir():
        target = old / child.name
        if child.name == MARKER or not (target.exists() or target.is_symlink()):
            continue
        if child.is_dir() and target.is_dir() and not target.is_symlink():
            found += _clashes(child, target)
        elif child.name not in ours:
            found.append(target)
    return found


def _move_into(new: Path, old: Path) -> None:
    """Move `new` to `old`; where `old` is a folder still holding files that are not hnm's, move `new`'s files into
    it one by one (its marker last) instead."""
    if not (old.exists() or old.is_symlink()) or not (new.is_dir() and old.is_dir()) or old.is_symlink():
        os.replace(new, old)
        return
    for child in new.iterdir():
        if child.name != MARKER:
            _move_into(child, old / child.name)
    os.replace(new / MARKER, old / MARKER)
    new.rmdir()


def finish(out: str | Path) -> None:
    """Mark the output at `out` complete once the names it was written with as `pending` are in place."""
    out = Path(out)
    marker = read_marker(out)
    if marker is None:
        raise ExportError(f"{out} has no {MARKER}. Fix: write it with hnm before finishing it")
    write_marker(out, Marker(marker.kind, marker.files, complete=True))
