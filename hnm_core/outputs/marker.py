"""The marker hnm puts into every output folder it writes (`.hnm-output.json`): the kind of output, the names it
wrote there and whether the output is complete. hnm_core.outputs.folder reads it to decide what it may replace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ExportError
from ..manifest import atomic_write_bytes

__all__ = ["MARKER", "Kind", "Marker", "read_marker", "write_marker", "mark_tree", "plain_name"]


MARKER = ".hnm-output.json"
"""The marker's file name, in every folder hnm writes."""


Kind = Literal["export", "pool", "audit", "model", "proof"]


@dataclass(frozen=True)
class Marker:
    """What a marker says: the kind of output, the names hnm wrote (or will write) beside it, and whether the run
    that wrote them finished."""

    kind: str
    files: tuple[str, ...]
    complete: bool


def plain_name(name: object) -> bool:
    """A name in the folder itself: a marker edited to list `../x` or `/home` must never make hnm delete it."""
    return (isinstance(name, str) and name not in ("", ".", "..", MARKER) and Path(name).name == name
            and "\\" not in name)


def read_marker(folder: str | Path) -> Marker | None:
    """The marker of `folder`, or None when it has none. A marker that cannot be read raises ExportError: without it
    hnm cannot tell its files from anyone else's."""
    path = Path(folder) / MARKER
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ExportError(f"{path} cannot be read ({error}), so hnm cannot tell which files in {path.parent} it "
                          "wrote. Fix: choose another folder for --out, or remove that folder yourself") from None
    files = raw.get("files") if isinstance(raw, dict) else None
    if not (isinstance(files, list) and all(map(plain_name, files)) and isinstance(raw.get("kind"), str)
            and isinstance(raw.get("complete"), bool)):
        raise ExportError(f"{path} is not a marker hnm wrote (it needs kind, complete and a list of plain file "
                          f"names), so hnm cannot tell which files in {path.parent} it wrote. Fix: choose another "
                          "folder for --out, or remove that folder yourself")
    return Marker(raw["kind"], tuple(files), raw["complete"])


def write_marker(folder: Path, marker: Marker) -> None:
    body = {"kind": marker.kind, "complete": marker.complete, "files": list(marker.files),
            "note": "written by hnm: `--overwrite` removes only the files listed here"}
    atomic_write_bytes(folder / MARKER, json.dumps(body, indent=2).encode())


def mark_tree(folder: Path, kind: Kind) -> None:
    """Give each folder the body wrote (a model's `1_Pooling/`...) a marker of its own, unless it has one (`pool/`),
    so replacing the output removes only the files hnm wrote there, at every depth."""
    if (folder / MARKER).exists():
        return
    for sub in folder.iterdir():
        if sub.is_dir() and not sub.is_symlink():
            mark_tree(sub, kind)
    write_marker(folder, Marker(kind, tuple(sorted(p.name for p in folder.iterdir())), complete=True))
