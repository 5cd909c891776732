"""The review file: a review queue (hnm_core.curate.review) as a CSV a person fills in a spreadsheet or an editor,
read back as verdicts (`read_overrides` reads it as an overrides file) and as the draws the estimate needs.

One line per draw, in draw order:

    draw, query_id, query, doc_id, document, positive_ids, positive, teacher_score, line, label, exported, why,
    probability, repeat_of, earlier, verdict, note

`positive_ids` lists the query's labelled positives (space-separated) and `positive` holds the text of its
best-scored one; `line` is the query's false-negative line and `label` / `exported` what the current settings do with
the candidate. A person fills `verdict` with one of

    unlabelled_positive (or positive)   it answers the query
    bad_negative (or bad)                not a useful negative (off-topic, broken text)
    confirmed_negative (or negative)     fine as a negative

and may write a `note`. An empty verdict is a draw not reviewed (left out of the estimate). A row drawn again
(`repeat_of` names its first draw) takes the verdict of its first draw when its own is empty and it lies before the
last draw answered (a person reviews from the top and need not judge a candidate twice). `earlier` holds the verdict
already given to the candidate (the pool's overrides file, e.g. from the studio's Explore page); an empty verdict
takes it on the same terms, up to the last draw answered in the file: beyond it, which draws carry an earlier verdict
depends on their truth (people mark unlabelled positives more than fine negatives), and counting them would bias the
estimate. Only `draw`, `query_id`, `doc_id`, `probability`, `repeat_of`, `verdict` and (when there) `earlier` are read
back; the other columns are there to judge by.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import Collection
from ..errors import DataError
from .overrides import VERDICTS, Override, Overrides
from .review import ReviewQueue

__all__ = ["REVIEW_COLUMNS", "VERDICT_WORDS", "write_review_file", "read_review_file", "review_overrides",
           "draws_matching"]

REVIEW_COLUMNS: tuple[str, ...] = (
    "draw", "query_id", "query", "doc_id", "document", "positive_ids", "positive", "teacher_score", "line", "label",
    "exported", "why", "probability", "repeat_of", "earlier", "verdict", "note",
)
_READ = ("draw", "query_id", "doc_id", "probability", "repeat_of", "verdict")

VERDICT_WORDS: dict[str, str] = {
    **{v: v for v in VERDICTS}, "positive": "unlabelled_positive", "bad": "bad_negative",
    "negative": "confirmed_negative",
}
"""What a person may write in the verdict column, and the verdict each word means."""

_FIX = f"write one of {', '.join(VERDICT_WORDS)} in the verdict column, or leave it empty"


def write_review_file(path: str | Path, queue: ReviewQueue, frame: pd.DataFrame, collection: Collection,
                      earlier: Overrides | None = None) -> Path:
    """Write `queue` (drawn from `frame`, a pool of `collection`) to the CSV at `path`, atomically; return the path.
    `earlier`: the verdicts already given (the pool's overrides), shown in the `earlier` column."""
    from ..manifest import atomic_write_bytes

    table = queue.table
    c = collection
    positives = frame[frame["is_positive"].to_numpy(dtype=bool)]
    best = (positives.assign(score=positives["teacher_score"].astype("float64").fillna(-math.inf))
            .sort_values("score", ascending=False, kind="stable").drop_duplicates("query_id"))
    best_doc = dict(zip(best["query_id"], best["doc_id"]))
    out = pd.DataFrame({
        "draw": table["draw"],
        "query_id": table["query_id"],
        "query": [c.query_texts[c.query_index[q]] for q in table["query_id"]],
        "doc_id": table["doc_id"],
        "document": [c.doc_texts[c.doc_index[d]] for d in table["doc_id"]],
        "positive_ids": [" ".join(c.positives.get(q, ())) for q in table["query_id"]],
        "positive": [c.doc_texts[c.doc_index[best_doc[q]]] if q in best_doc else "" for q in table["query_id"]],
        "teacher_score": table["teacher_score"].round(6),
        "line": table["line"].round(6),
        "label": table["label"],
        "exported": table["exported"],
        "why": table["why"],
        "probability": [repr(float(p)) for p in table["probability"]],  # every digit: the estimate weighs by it
        "repeat_of": table["repeat_of"],
        "earlier": [_earlier(earlier, q, d) for q, d in zip(table["query_id"], table["doc_id"])],
        "verdict": "",
        "note": "",
    }, columns=list(REVIEW_COLUMNS))
    path = Path(path).expanduser()
    atomic_write_bytes(path, out.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return path


def _earlier(earlier: Overrides | None, query_id: str, doc_id: str) -> str:
    given = earlier.get(query_id, doc_id) if earlier is not None else None
    return given.verdict if given is not None else ""


def read_review_file(path: str | Path, collection: Collection | None = None) -> pd.DataFrame:
    """The draws of a filled review file: draw, query_id, doc_id, probability, repeat_of, verdict (canonical, "" when
    not reviewed; a repeat's empty verdict filled from its first draw), note, and `line` (where the draw starts in
    the file). Ids are checked against `collection` when given. Raises DataError naming the file and line."""
    path = Path(path).expanduser()
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(path, "no such review file.", fix="write one with `hnm review POOL_DIR --out FILE`") from None
    records = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [name for name in _READ if name not in (reader.fieldnames or ())]
        if missing:
            raise DataError(path, f"no {', '.join(missing)} column.", line=1,
                            fix="keep the header `hnm review` wrote (add columns if you like, never rename these)")
        start = 2
        for record in reader:
            records.append(_parse(record, path, start, collection))
            start = reader.line_num + 1
    table = pd.DataFrame(records, columns=["draw", "query_id", "doc_id", "probability", "repeat_of", "verdict",
                                           "earlier", "note", "line"])
    by_draw = dict(zip(table["draw"], zip(table["verdict"], table["query_id"], table["doc_id"])))
    # A repeat inherits only up to the last draw a person answered: past it, which draws repeat an answered one
    # depends on their probabilities, and counting them would weigh the frequent rows twice.
    reached = int(table.loc[table["verdict"] != "", "draw"].max()) if (table["verdict"] != "").any() else 0
    filled = []
    for draw, repeat, verdict, earlier, query_id, doc_id, line in zip(
            table["draw"], table["repeat_of"], table["verdict"], table["earlier"], table["query_id"], table["doc_id"],
            table["line"]):
        if repeat and repeat in by_draw and by_draw[repeat][1:] != (query_id, doc_id):
            raise DataError(path, f"draw {draw} repeats draw {repeat}, which is another candidate.", line=line,
                            fix="keep query_id, doc_id and repeat_of as `hnm review` wrote them")
        inherited = by_draw[repeat][0] if repeat in by_draw else ""
        filled.append(verdict or ((inherited or earlier) if draw <= reached else ""))
    return table.drop(columns="earlier").assign(verdict=filled)


def review_overrides(table: pd.DataFrame, path: str | Path | None = None) -> Overrides:
    """The verdicts of a read review file (`read_review_file`) as overrides: one per reviewed (query, document)
    pair, the latest draw's when a pair was drawn twice with different verdicts."""
    by_pair: dict[tuple[str, str], Override] = {}
    for query_id, doc_id, verdict, note in zip(table["query_id"], table["doc_id"], table["verdict"], table["note"]):
        if verdict:
            by_pair.pop((query_id, doc_id), None)
            by_pair[(query_id, doc_id)] = Override(query_id, doc_id, verdict, note)
    return Overrides(tuple(by_pair.values()), Path(path) if path is not None else None,
                     int((table["verdict"] != "").sum()))


def _parse(record: dict[str, str | None], path: Path, line: int, collection: Collection | None) -> dict:
    def text(name: str) -> str:
        return (record.get(name) or "").strip()

    values: dict = {"query_id": text("query_id"), "doc_id": text("doc_id"), "note": text("note"), "line": line}
    for name in ("draw", "repeat_of"):
        try:
            values[name] = int(text(name) or "0")
        except ValueError:
            raise DataError(path, f"{name} is {text(name)!r}, not a whole number.", line=line,
                            fix=f"keep the {name} column as `hnm review` wrote it") from None
    try:
        values["probability"] = float(text("probability"))
    except ValueError:
        values["probability"] = math.nan
    if not values["draw"] >= 1 or not 0.0 < values["probability"] <= 1.0:
        raise DataError(path, f"draw {text('draw')!r} has probability {text('probability')!r}.", line=line,
                        fix="keep the draw and probability columns as `hnm review` wrote them")
    for name in ("verdict", "earlier"):
        word = text(name).lower().replace(" ", "_")
        if word and word not in VERDICT_WORDS:
            what = "verdict" if name == "verdict" else "earlier verdict"
            raise DataError(path, f"draw {values['draw']}: unknown {what} {text(name)!r}.", line=line,
                            fix=_FIX if name == "verdict" else "keep the earlier column as `hnm review` wrote it")
        values[name] = VERDICT_WORDS.get(word, "")
    if collection is not None:
        for name, index, what in (("query_id", collection.query_index, "query"),
                                  ("doc_id", collection.doc_index, "document")):
            if values[name] not in index:
                raise DataError(path, f"unknown {what} id {values[name]!r}: not in the collection "
                                      f"{collection.name!r}.", line=line,
                                fix="use the review file written for this pool")
    return values


def draws_matching(table: pd.DataFrame, queue: ReviewQueue, path: str | Path) -> pd.DataFrame:
    """The read draws of `table` with their frame `row` and exact `probability` from `queue` (the same queue drawn
    again from the same pool and settings); DataError when a draw names another candidate or probability, i.e. the
    file was drawn from another pool or with other settings."""
    drawn = queue.table.set_index("draw")
    rows, probability = [], []
    for draw, query_id, doc_id, p, line in zip(table["draw"], table["query_id"], table["doc_id"],
                                               table["probability"], table["line"]):
        if draw not in drawn.index:
            raise DataError(path, f"draw {draw} is beyond the queue's {len(drawn):,} draws.", line=line,
                            fix="give the same review settings (--review-size, --review-seed...) as `hnm review`")
        mine = drawn.loc[draw]
        if (mine["query_id"], mine["doc_id"]) != (query_id, doc_id) or not np.isclose(mine["probability"], p,
                                                                                       rtol=1e-9, atol=0.0):
            raise DataError(path, f"draw {draw} ({query_id}, {doc_id}, probability {float(p)!r}) is not the "
                                  f"queue's ({mine['query_id']}, {mine['doc_id']}, {float(mine['probability'])!r}).",
                            line=line,
                            fix="estimate with the pool and the settings `hnm review` drew the file with")
        rows.append(int(mine["row"]))
        probability.append(float(mine["probability"]))
    return table.assign(row=np.asarray(rows, dtype=np.int64), probability=np.asarray(probability))
