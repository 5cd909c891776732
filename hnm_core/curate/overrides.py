"""Corrections: a person's verdicts on pool candidates, which `curate` applies as labels of their own.

An overrides file is JSON Lines, one verdict a line, appended as people review candidates:

    {"query_id": "q07", "doc_id": "d031", "verdict": "unlabelled_positive", "note": "answers it", "time": "..."}

    unlabelled_positive  the candidate answers the query although it is not labelled: never exported as a negative;
                         exported as an extra positive when the `extra_positives` setting is on
    bad_negative         the candidate is not a useful negative (off-topic, broken text): never exported
    confirmed_negative   a person read it and it is fine as a negative: it stays in the hard band whatever the
                         false-negative, near-duplicate, same-cluster, skip-N and floor rules say (an unscored one
                         stays unscored: the sampler orders by teacher score), and a trained teacher learns it as a
                         negative (`hnm train-teacher --overrides`)

    cleared              withdraws the pair's earlier verdict (the candidate is curated by the rules again)

Files written before `confirmed_negative` existed read as before: the kinds are only ever added to.

The last line about a (query, document) pair wins, so a verdict is changed by appending another, and withdrawn by
appending `cleared`: the file keeps the whole history. The file is kept
by default beside the saved pool (`POOL_DIR/overrides.jsonl`, see `default_path`); `hnm curate --overrides FILE`
and `hnm mine --overrides FILE` read another. Every write replaces the whole file through a temporary file and a
rename, under a lock, so two writers never lose each other's lines and a kill never leaves half a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from ..data import Collection
from ..errors import DataError

__all__ = ["VERDICTS", "CLEARED", "Verdict", "Override", "Overrides", "OVERRIDES_FILE", "default_path",
           "read_overrides", "add_override"]

Verdict = Literal["unlabelled_positive", "bad_negative", "confirmed_negative"]
# Appended to, never reordered: row_verdicts codes a verdict by its index here, and curate reads those codes.
VERDICTS: tuple[Verdict, ...] = ("unlabelled_positive", "bad_negative", "confirmed_negative")
CLEARED = "cleared"  # a line that withdraws the pair's verdict; never a verdict in force
_LINE_VERDICTS = (*VERDICTS, CLEARED)

OVERRIDES_FILE = "overrides.jsonl"

# Written as escapes: raw in a note (JSON allows them in a string), they break the line for any tool that splits lines
# as str.splitlines() does.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})

_FIX = ("write one JSON object a line with query_id, doc_id, verdict (unlabelled_positive, bad_negative, "
        "confirmed_negative or cleared), note, time")


class Override(NamedTuple):
    """One verdict on one candidate of one query. `time` is UTC, ISO 8601."""

    query_id: str
    doc_id: str
    verdict: Verdict
    note: str = ""
    time: str = ""


@dataclass(frozen=True)
class Overrides:
    """The verdicts in force: the last one per (query, document) pair, in the order the file first names them.
    `path` is the file they were read from (None when there is none); `lines` counts the verdicts in it, changed
    ones included."""

    entries: tuple[Override, ...] = ()
    path: Path | None = None
    lines: int = 0
    _by_pair: dict[tuple[str, str], Override] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_pair.update({(o.query_id, o.doc_id): o for o in self.entries})

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, query_id: str, doc_id: str) -> Override | None:
        """The verdict on `doc_id` as a candidate of `query_id`, if there is one."""
        return self._by_pair.get((query_id, doc_id))

    def count(self, verdict: Verdict) -> int:
        """Pairs whose verdict in force is `verdict`."""
        return sum(o.verdict == verdict for o in self.entries)

    def to_jsonl(self) -> bytes:
        """The verdicts in force as the lines of an overrides file (what a copy of them beside a pool holds)."""
        return b"".join((json.dumps(o._asdict(), ensure_ascii=False).translate(_LINE_BREAKS) + "\n").encode("utf-8")
                        for o in self.entries)

    def row_verdicts(self, frame: pd.DataFrame, codes: np.ndarray, uniques: pd.Index) -> np.ndarray:
        """Per row of a pool table, 1 + the index in VERDICTS of its verdict, 0 for none. `codes`, `uniques`:
        `pd.factorize(frame["query_id"])`. Only the rows of queries with a verdict are compared, so a slider
        move over a 100k-row pool pays for a handful of queries, not for every row."""
        out = np.zeros(len(frame), dtype=np.int8)
        if not self.entries:
            return out
        wanted = pd.Index(uniques).get_indexer(sorted({o.query_id for o in self.entries}))
        rows = np.flatnonzero(np.isin(codes, wanted[wanted >= 0]))
        if not len(rows):
            return out
        query_ids = np.asarray(uniques, dtype=object)[codes[rows]]
        doc_ids = frame["doc_id"].to_numpy(dtype=object)[rows]
        for row, q, d in zip(rows.tolist(), query_ids.tolist(), doc_ids.tolist()):
            found = self._by_pair.get((q, d))
            if found is not None:
                out[row] = VERDICTS.index(found.verdict) + 1
        return out


def default_path(pool_dir: str | Path) -> Path:
    """Where the overrides of the pool saved in `pool_dir` are kept: beside its pool.parquet."""
    return Path(pool_dir).expanduser() / OVERRIDES_FILE


def read_overrides(path: str | Path, collection: Collection | None = None, *, missing_ok: bool = False) -> Overrides:
    """The verdicts of the overrides file at `path`, each query and document id checked against `collection` (the
    pool's) when given. A missing file is an error unless `missing_ok` (then there are none). Raises DataError
    naming the file, the line and the fix for a line that is not JSON, lacks a field, has an unknown verdict or
    names a query or document the collection does not have. A `.csv` file is read as a filled review file
    (hnm_core.curate.review_file: `hnm review`'s queue with its verdict column filled)."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".csv" and (path.exists() or not missing_ok):
        from .review_file import read_review_file, review_overrides

        return review_overrides(read_review_file(path, collection), path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as an editor on Windows saves UTF-8, is dropped
    except FileNotFoundError:
        if missing_ok:
            return Overrides(path=path)
        raise DataError(path, "no such overrides file.", fix="check the path, or mark candidates in the studio's "
                                                             "Explore page to start one") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read it ({error}).", fix=_FIX) from None
    by_pair: dict[tuple[str, str], Override] = {}
    lines = 0
    # "\n" only: str.splitlines() also splits on U+2028, U+2029 and U+0085, which JSON allows inside a string (a note)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        override = _parse(line, path, number)
        if collection is not None:
            _check_ids(override, collection, path, number)
        by_pair.pop((override.query_id, override.doc_id), None)
        if override.verdict != CLEARED:
            by_pair[(override.query_id, override.doc_id)] = override
        lines += 1
    return Overrides(tuple(by_pair.values()), path, lines)


def _parse(line: str, path: Path, number: int) -> Override:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON ({error.msg} at column {error.colno}).", line=number,
                        fix=_FIX) from None
    except RecursionError:
        raise DataError(path, "not valid JSON (nested too deep).", line=number, fix=_FIX) from None
    if not isinstance(record, dict):
        raise DataError(path, f"a JSON {type(record).__name__}, not an object.", line=number, fix=_FIX)
    values = {}
    for name in ("query_id", "doc_id"):
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
            raise DataError(path, f"{name} is {'missing' if value is None else repr(value)}.", line=number,
                            fix=f"give {name} as a non-empty string")
        values[name] = str(value)
    verdict = record.get("verdict")
    if verdict not in _LINE_VERDICTS:
        raise DataError(path, f"unknown verdict {verdict!r}.", line=number,
                        fix=f"use one of {', '.join(_LINE_VERDICTS)}")
    for name in ("note", "time"):
        value = record.get(name, "")
        if not isinstance(value, str):
            raise DataError(path, f"{name} is {value!r}, not a string.", line=number, fix=f"give {name} as a string")
        values[name] = value
    return Override(values["query_id"], values["doc_id"], verdict, values["note"], values["time"])


def _check_ids(override: Override, collection: Collection, path: Path, number: int) -> None:
    where = f"the collection {collection.name!r}"
    if override.query_id not in collection.query_index:
        raise DataError(path, f"unknown query id {override.query_id!r}: it is not a query of {where}.",
                        line=number, fix="correct the id, or use the overrides file of the pool it was written for")
    if override.doc_id not in collection.doc_index:
        raise DataError(path, f"unknown doc id {override.doc_id!r}: it is not a document of {where}.",
                        line=number, fix="correct the id, or use the overrides file of the pool it was written for")


def add_override(path: str | Path, query_id: str, doc_id: str, verdict: Verdict | Literal["cleared"], note: str = "",
                 *, now: datetime | None = None) -> Override:
    """Append a verdict (or CLEARED, which withdraws the pair's verdict) to the overrides file at `path` (created if
    missing) and return it. The whole file is rewritten to a temporary file and renamed into place under a lock:
    concurrent writers each keep their line, and a kill leaves the old file or the new one. Raises DataError for an
    unknown verdict or an empty id."""
    from filelock import FileLock

    from ..manifest import atomic_write_bytes

    path = Path(path).expanduser()
    if verdict not in _LINE_VERDICTS:
        raise DataError(path, f"unknown verdict {verdict!r}.", fix=f"use one of {', '.join(_LINE_VERDICTS)}")
    if not query_id or not doc_id:
        raise DataError(path, "a verdict needs a query id and a document id.", fix="name the candidate it is about")
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
    override = Override(str(query_id), str(doc_id), verdict, note.strip(), stamp)
    line = json.dumps(override._asdict(), ensure_ascii=False).translate(_LINE_BREAKS) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / f".{path.name}.lock"):
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):  # a hand edit without a final newline must not glue two lines
            old += b"\n"
        atomic_write_bytes(path, old + line.encode("utf-8"))
    return override
