"""Rounds: how the negatives of one export differ from another's (mine, train, mine again with the new model).

`diff_rounds(a_dir, b_dir)` reads the labelled pools of two exports written with the `pool` format and counts,
per (query, document) pair, what was selected in each round and how each label changed. Rounds mined from
different collections share no pairs, so their comparison is meaningless ("Jaccard 0.00"): it is refused unless asked
for, by the collection each export's manifest names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..curate.rules import LABELS
from ..errors import DataError
from ..export.formats import FILE_NAMES
from ..schema import ROUND_COLUMNS, missing_columns
from ..wording import counted

__all__ = ["diff_rounds", "RoundDiff", "Transition"]

class Transition(NamedTuple):
    """`count` (query, document) pairs went from label `before` in round A to `after` in round B ("absent" = not in
    that round's pool)."""

    before: str
    after: str
    count: int


@dataclass(frozen=True)
class RoundDiff:
    """How the selected negatives of export B differ from those of export A (pairs are (query_id, doc_id))."""

    a_selected: int
    b_selected: int
    overlap: int  # selected in both
    jaccard: float  # overlap / selected in either (1.0 when neither selected anything)
    a_now_easy: int  # selected in A, labelled easy in B
    a_dropped: int  # selected in A, not selected in B (whatever B labels them)
    new_in_b: int  # selected in B, not selected in A
    transitions: tuple[Transition, ...]  # every (label A, label B) pair with its count, most frequent first

    def sentences(self) -> list[str]:
        out = [
            f"Round B kept {self.overlap:,} of round A's {counted(self.a_selected, 'selected negative')} "
            f"(Jaccard {self.jaccard:.2f} over {self.a_selected:,} and {self.b_selected:,}).",
            f"{self.a_dropped:,} of A's negatives {'is' if self.a_dropped == 1 else 'are'} no longer selected in B; "
            f"{self.a_now_easy:,} of them {'is' if self.a_now_easy == 1 else 'are'} now labelled easy.",
            f"B selected {counted(self.new_in_b, 'negative')} that A had not.",
        ]
        changes = [t for t in self.transitions if t.before != t.after]
        if changes:
            out.append("Label changes: " + ", ".join(f"{t.count:,} {t.before} → {t.after}" for t in changes) + ".")
        else:
            out.append("No candidate changed label.")
        return out


def diff_rounds(a_dir: str | Path, b_dir: str | Path, *, allow_different_collections: bool = False) -> RoundDiff:
    """Compare two exports that include the `pool` format (their labelled pool files).

    allow_different_collections: compare even when the manifests name different collections (name, source, number
    of documents or queries); by default that raises a DataError.
    """
    for folder in (a_dir, b_dir):
        if not Path(folder).is_dir():
            what = "is a file" if Path(folder).exists() else "does not exist"
            raise DataError(folder, f"{what}; hnm diff compares two export folders.",
                            fix="pass the --out folders of two hnm mine / hnm curate runs (exported with the 'pool' "
                                "format)")
    if not allow_different_collections:
        _check_same_collection(a_dir, b_dir)
    key = ["query_id", "doc_id"]
    a, b = _labelled_pool(a_dir), _labelled_pool(b_dir)
    both = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"))
    for side in ("a", "b"):
        both[f"label_{side}"] = both[f"label_{side}"].fillna("absent")
        both[f"selected_{side}"] = both[f"selected_{side}"].fillna(False).astype(bool)
    sel_a, sel_b = both["selected_a"].to_numpy(), both["selected_b"].to_numpy()
    overlap = int((sel_a & sel_b).sum())
    either = int((sel_a | sel_b).sum())
    pairs = both.groupby(["label_a", "label_b"], observed=True).size().sort_values(ascending=False, kind="stable")
    return RoundDiff(
        a_selected=int(sel_a.sum()),
        b_selected=int(sel_b.sum()),
        overlap=overlap,
        jaccard=overlap / either if either else 1.0,
        a_now_easy=int((sel_a & (both["label_b"] == "easy").to_numpy()).sum()),
        a_dropped=int((sel_a & ~sel_b).sum()),
        new_in_b=int((sel_b & ~sel_a).sum()),
        transitions=tuple(Transition(str(before), str(after), int(n)) for (before, after), n in pairs.items()),
    )


# What identifies a collection in an export's manifest (hnm_core.pool records these when it mines).
_COLLECTION_KEYS = ("name", "source", "docs", "queries")


def _check_same_collection(a_dir: str | Path, b_dir: str | Path) -> None:
    a, b = _collection(a_dir), _collection(b_dir)
    differ = [f"{key} {a[key]!r} vs {b[key]!r}" for key in _COLLECTION_KEYS
              if key in a and key in b and a[key] != b[key]]
    if differ:
        raise DataError(Path(b_dir) / "manifest.json",
                        f"the two rounds were mined from different collections ({'; '.join(differ)}).",
                        fix="compare rounds of one collection, or allow it (hnm diff --allow-different-collections; in the "
                            "studio, the 'another collection' checkbox)")


def _collection(folder: str | Path) -> dict:
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "no manifest.json, so the round's collection is unknown.",
                        fix="point at a folder written by hnm export, or pass --allow-different-collections") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err.msg}).", line=err.lineno,
                        fix="re-export the round, or pass --allow-different-collections") from None
    info = manifest.get("collection") if isinstance(manifest, dict) else None
    return info if isinstance(info, dict) else {}


def _labelled_pool(folder: str | Path) -> pd.DataFrame:
    path = Path(folder) / FILE_NAMES["pool"]
    if not path.exists():
        raise DataError(path, "no labelled pool here.", fix="export both rounds with the 'pool' format included")
    frame = pd.read_parquet(path)
    missing = missing_columns(frame, ROUND_COLUMNS)
    if missing:
        raise DataError(path, f"missing columns {', '.join(missing)}; this is not an export's labelled pool.",
                        fix="point at a folder written by hnm export with the 'pool' format")
    frame = frame[list(ROUND_COLUMNS)]
    duplicated = int(frame.duplicated(["query_id", "doc_id"]).sum())
    if duplicated:
        raise DataError(path, f"{duplicated:,} (query_id, doc_id) pairs appear more than once.",
                        fix="re-export from a pool built by hnm (one row per query and document)")
    frame["label"] = frame["label"].astype("string")
    unknown = set(frame["label"].dropna().unique()) - set(LABELS)
    if unknown:
        raise DataError(path, f"unknown labels {', '.join(sorted(unknown))}.",
                        fix="export both rounds with the same hnm version")
    return frame
