"""Pairs files: JSONL / JSON / CSV / TSV / Parquet with a query and a positive column (auto-detected or named),
and any negative columns of triplet / n-tuple files.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import DataError
from ..wording import counted, one_line
from .collection import Collection, text_id
from .reading import Where, check_file, json_records, located_error, text_lines

__all__ = ["QUERY_COLUMNS", "POSITIVE_COLUMNS", "load_pairs", "pairs_from_json", "build_pairs", "pick_columns", "PairsBuilder",
           "PairRow"]


# Pairs files: the first of these names present in the file (case-insensitive) is the query / positive column.
QUERY_COLUMNS: tuple[str, ...] = ("query", "anchor", "question", "sentence1", "q")
POSITIVE_COLUMNS: tuple[str, ...] = ("positive", "pos", "document", "passage", "answer", "sentence2", "text")


def load_pairs(path: str | Path, query_column: str | None = None, positive_column: str | None = None) -> Collection:
    """Read a pairs file: one row per (query, positive); a repeated query collects several positives.

    query_column / positive_column: the column names; by default the first of QUERY_COLUMNS / POSITIVE_COLUMNS
    present (case-insensitive). Formats: .jsonl (one object per line), .json (an array of objects, or JSONL),
    .csv, .tsv (with a header row), .parquet. Ids are `text_id(text, "q")` / `text_id(text, "d")`, so texts that
    are equal after `normalize_text` share one id. Negative columns (`negative`, `neg`, `negative_1`..`negative_n`,
    `hard_negative`, as in sentence-transformers triplet / n-tuple files; a JSON or Parquet cell may hold a list)
    become the query's given negatives, as FlagEmbedding "neg" does; an empty or missing cell is counted and skipped.
    """
    path = Path(path)
    suffix = check_file(path)
    if suffix in (".jsonl", ".json"):
        records = json_records(path, example='{"query": "...", "positive": "..."}')
        return pairs_from_json(path, records, query_column, positive_column)
    if suffix == ".parquet":
        return build_pairs(path, _parquet_pairs(path, query_column, positive_column))
    return build_pairs(path, _csv_pairs(path, "\t" if suffix == ".tsv" else ",", query_column, positive_column))


# A triplet / n-tuple file's negative columns: negative, negatives, neg, negative_1, neg_2, hard_negative, ...
_NEGATIVE_COLUMN = re.compile(r"(hard[-_ ]?)?neg(ative)?s?([-_ ]?\d+)?$", re.IGNORECASE)


class _Columns(NamedTuple):
    query: str
    positive: str
    negatives: tuple[str, ...]
    label: str | None = None  # a labelled-pair file's `label`: > 0 the pair is a positive, else a negative


class PairRow(NamedTuple):
    where: Where
    query: Any
    positive: Any
    negatives: tuple[Any, ...]  # one value per _Columns.negatives column: a text, a list of texts, or None
    label: Any = None


def pairs_from_json(path: Path, records: Iterator[tuple[Where, dict[str, Any]]], query_column: str | None,
                     positive_column: str | None) -> Collection:
    first = next(records)
    records = chain([first], records)
    columns = pick_columns(path, list(first[1]), query_column, positive_column, where=first[0])
    rows = (PairRow(where, record.get(columns.query), record.get(columns.positive),
                 tuple(record.get(key) for key in columns.negatives),
                 record.get(columns.label) if columns.label else None) for where, record in records)
    return build_pairs(path, (columns, rows))


def _csv_pairs(path: Path, delimiter: str, query_column: str | None,
               positive_column: str | None) -> tuple[_Columns, Iterator[PairRow]]:
    lines = text_lines(path)
    # csv pulls as many lines as a quoted multi-line field needs; `last` tracks the physical line for messages.
    last = 0

    def feed() -> Iterator[str]:
        nonlocal last
        for last, text in lines:
            yield text

    reader = csv.reader(feed(), delimiter=delimiter)
    separator = "a tab" if delimiter == "\t" else "a comma"
    parse_fix = "check the quoting on that line (a field with quotes must be fully quoted)."
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    except csv.Error as exc:
        raise DataError(path, f"cannot parse the row ({exc})", line=last, fix=parse_fix) from None
    if header is None:
        raise DataError(path, "the file is empty (no header row)",
                        fix="write a header row naming the query and positive columns, then one row per pair.")
    columns = pick_columns(path, header, query_column, positive_column, where=last)
    at = [header.index(key) for key in (columns.query, columns.positive, *columns.negatives)]
    label_at = header.index(columns.label) if columns.label else None

    def rows() -> Iterator[PairRow]:
        start = last + 1
        try:
            for row in reader:
                if row:  # csv yields [] for blank lines
                    if len(row) != len(header):
                        raise DataError(path, f"row has {len(row)} fields but the header has {len(header)}",
                                        line=start, fix=f"quote fields that contain {separator} or a quote character.")
                    yield PairRow(start, row[at[0]], row[at[1]], tuple(row[i] for i in at[2:]),
                               None if label_at is None else row[label_at])
                start = last + 1
        except csv.Error as exc:
            raise DataError(path, f"cannot parse the row ({exc})", line=last, fix=parse_fix) from None

    return columns, rows()


def _parquet_pairs(path: Path, query_column: str | None,
                   positive_column: str | None) -> tuple[_Columns, Iterator[PairRow]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rewrite = "re-write it with pandas.DataFrame.to_parquet or pyarrow.parquet.write_table."
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"is not a readable Parquet file ({one_line(exc)})", fix=rewrite) from None
    schema = parquet.schema_arrow
    columns = pick_columns(path, schema.names, query_column, positive_column)
    for key in (columns.query, columns.positive, *columns.negatives):
        kind = schema.field(key).type
        if key in columns.negatives and (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            kind = kind.value_type  # a list of negatives per row
        if pa.types.is_dictionary(kind):  # pandas categoricals are stored this way
            kind = kind.value_type
        if str(kind) not in ("string", "large_string", "string_view"):
            raise DataError(path, f"column {key!r} holds {kind}, not text",
                            fix="store one string per row in that column (a list of positives belongs in "
                                "FlagEmbedding JSONL).")
    if parquet.metadata.num_rows == 0:
        raise DataError(path, "has no rows", fix="write at least one (query, positive) row.")

    def rows() -> Iterator[PairRow]:
        row = 0
        try:
            names = [columns.query, columns.positive, *columns.negatives, *([columns.label] if columns.label else [])]
            for batch in parquet.iter_batches(batch_size=65_536, columns=names):
                values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                if not columns.label:
                    values.append([None] * batch.num_rows)
                for query, positive, *negatives, label in zip(*values):
                    row += 1
                    yield PairRow(f"row {row}", query, positive, tuple(negatives), label)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise DataError(path, f"row {row + 1}: cannot be read ({one_line(exc)})", fix=rewrite) from None

    return columns, rows()


def pick_columns(path: Path, columns: list[str], query_column: str | None, positive_column: str | None, *,
                  where: Where | None = None) -> _Columns:
    """The query and positive columns, and the negative columns in file order. `where`: the header's line (or the
    first JSON record, whose keys stand for the file's columns), for the error message."""
    found = ", ".join(repr(c) for c in columns) or "none"
    fix = (f"rename the columns or name them with query_column= / positive_column=; recognised query columns: "
           f"{'/'.join(QUERY_COLUMNS)}; positive columns: {'/'.join(POSITIVE_COLUMNS)}.")
    if "_id" in columns:
        fix = "this looks like a BEIR corpus or queries file: pass the folder that holds it."
    picked: list[str] = []
    for given, names, role in ((query_column, QUERY_COLUMNS, "query"), (positive_column, POSITIVE_COLUMNS, "positive")):
        if given is not None:
            if given not in columns:
                raise _located(path, where, f"has no {role} column {given!r}; columns found: {found}", fix)
            picked.append(given)
            continue
        lowered = {c.strip().lower(): c for c in reversed(columns)}  # reversed: the first of equal names wins
        match = next((lowered[n] for n in names if n in lowered and lowered[n] not in picked), None)
        if match is None:
            raise _located(path, where, f"found no {role} column; columns found: {found}", fix)
        picked.append(match)
    negatives = tuple(dict.fromkeys(c for c in columns if c not in picked and _NEGATIVE_COLUMN.match(c.strip())))
    label = next((c for c in columns if c.strip().lower() == "label" and c not in picked), None)
    return _Columns(picked[0], picked[1], negatives, label)


def _located(path: Path, where: Where | None, message: str, fix: str) -> DataError:
    return DataError(path, message, fix=fix) if where is None else located_error(path, where, message, fix)


class PairsBuilder:
    """Collects (query, positive[, negatives]) rows under text ids, collapsing duplicates, keeping first-seen order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.docs: dict[str, str] = {}
        self.queries: dict[str, str] = {}
        self.positives: dict[str, dict[str, None]] = {}
        self.negatives: dict[str, dict[str, None]] = {}
        self.repeated_pairs = 0
        self.empty_negatives = 0

    def query(self, where: Where, value: Any, column: str) -> str:
        text = self._text(where, value, column, "query")
        query_id = text_id(text, "q")
        self.queries.setdefault(query_id, text)
        self.positives.setdefault(query_id, {})
        return query_id

    def positive(self, where: Where, query_id: str, value: Any, column: str) -> None:
        doc_id = self._doc(self._text(where, value, column, "positive"))
        row = self.positives[query_id]
        if doc_id in row:
            self.repeated_pairs += 1
        row[doc_id] = None

    def negative(self, where: Where, query_id: str, value: Any, column: str) -> None:
        if isinstance(value, str) and not value.strip():
            self.empty_negatives += 1
            return
        doc_id = self._doc(self._text(where, value, column, "negative"))
        self.negatives.setdefault(query_id, {})[doc_id] = None

    def _doc(self, text: str) -> str:
        doc_id = text_id(text, "d")
        self.docs.setdefault(doc_id, text)
        return doc_id

    def _text(self, where: Where, value: Any, column: str, role: str) -> str:
        if value is None:
            raise located_error(self.path, where, f"no {role} (column {column!r} is missing or null)",
                         f"give every row a {role} text, or delete the row.")
        if not isinstance(value, str):
            raise located_error(self.path, where, f"the {role} in {column!r} is {type(value).__name__}, not text",
                         f"store the {role} as a string" + (" (a list of positives belongs in FlagEmbedding JSONL, "
                                                            '{"query": ..., "pos": [...]}).' if role == "positive"
                                                            else "."))
        text = value.strip()
        if not text:
            raise located_error(self.path, where, f"empty {role} in column {column!r}",
                         f"fill in the {role} text, or delete the row.")
        return text

    def collection(self, kind: str) -> Collection:
        name = self.path.name
        problems: list[str] = []
        if self.repeated_pairs:
            problems.append(f"{name}: {counted(self.repeated_pairs, 'row')} repeated a (query, positive) pair "
                            "(after normalising case and spaces); kept one.")
        if self.empty_negatives:
            problems.append(f"{name}: {counted(self.empty_negatives, 'empty negative')} skipped.")
        negatives: dict[str, tuple[str, ...]] = {}
        negative_is_positive = 0
        for query_id, given in self.negatives.items():
            kept = tuple(d for d in given if d not in self.positives[query_id])
            negative_is_positive += len(given) - len(kept)
            if kept:
                negatives[query_id] = kept
        if negative_is_positive:
            problems.append(f"{name}: {counted(negative_is_positive, 'negative')} equal to a positive of the same "
                            "query dropped from its negatives.")
        # a labelled-pair file can give a query only label-0 rows: nothing to mine for it
        unlabelled = [q for q, p in self.positives.items() if not p]
        if unlabelled:
            problems.append(f"{name}: {counted(len(unlabelled), 'query', 'queries')} with only negative rows (label 0) "
                            "left out.")
        kept = [q for q in self.queries if self.positives[q]]
        return Collection(
            name=self.path.stem,
            doc_ids=tuple(self.docs),
            doc_texts=tuple(self.docs.values()),
            query_ids=tuple(kept),
            query_texts=tuple(self.queries[q] for q in kept),
            positives={q: tuple(self.positives[q]) for q in kept},
            negatives={q: n for q, n in negatives.items() if self.positives[q]},
            problems=tuple(problems),
            source=f"{kind} file {self.path.resolve()}",
        )


def _positive_label(path: Path, where: Where, label: Any, column: str) -> bool:
    """A labelled-pair row (sentence-transformers' labeled-pair format, hnm's `labeled_pair` export): label > 0 is
    a (query, positive) pair, label 0 a (query, negative) one."""
    try:
        value = float(label)
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value):
        raise located_error(path, where, f"the {column!r} of this row is {label!r}, not a number",
                     "give every row a label: 1 (or any score > 0) for a positive pair, 0 for a negative one.")
    return value > 0


def build_pairs(path: Path, read: tuple[_Columns, Iterable[PairRow]]) -> Collection:
    columns, rows = read
    builder = PairsBuilder(path)
    for row in rows:
        query_id = builder.query(row.where, row.query, columns.query)
        if columns.label and not _positive_label(path, row.where, row.label, columns.label):
            builder.negative(row.where, query_id, row.positive, columns.positive)
        else:
            builder.positive(row.where, query_id, row.positive, columns.positive)
        for column, value in zip(columns.negatives, row.negatives):
            for negative in value if isinstance(value, list) else [value]:
                if negative is None:  # an n-tuple row with fewer negatives than columns
                    builder.empty_negatives += 1
                else:
                    builder.negative(row.where, query_id, negative, column)
    return builder.collection("pairs")
