"""Stage 1, data: read a retrieval collection into one in-memory model.

Readers: a BEIR folder, a pairs file (JSONL / JSON / CSV / TSV / Parquet with query + positive columns),
FlagEmbedding JSONL. All produce a `Collection`. Files are streamed line by line (or in Parquet batches), so a corpus
of a million documents costs its texts in memory and one pass over the file. Bad input raises `DataError` naming the
file, the line (or record / row where a format has no lines) and the fix; recoverable oddities (empty documents,
qrels naming unknown ids, repeated rows) are skipped and counted in `Collection.problems`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

from .errors import DataError
from .settings import setting

__all__ = [
    "Collection",
    "normalize_text",
    "text_id",
    "load_collection",
    "load_beir",
    "load_pairs",
    "load_flag",
    "beir_splits",
    "QUERY_COLUMNS",
    "POSITIVE_COLUMNS",
    "FILE_SUFFIXES",
]

_SPACE = re.compile(r"\s+")

# Pairs files: the first of these names present in the file (case-insensitive) is the query / positive column.
QUERY_COLUMNS: tuple[str, ...] = ("query", "anchor", "question", "sentence1", "q")
POSITIVE_COLUMNS: tuple[str, ...] = ("positive", "pos", "document", "passage", "answer", "sentence2", "text")
FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

_UTF8_FIX = "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8` (use its real encoding)."
_BEIR_LAYOUT = "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv (or qrels.tsv for the test split)"

# Where a problem is: a line number, or "record 3" / "row 3" for formats without meaningful lines.
_Where = int | str


def normalize_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace: two texts equal after this are treated as duplicates."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_id(text: str, prefix: str) -> str:
    """A stable id for a text that came without one: `prefix` + 16 hex chars (64 bits: collisions stay unlikely at millions of texts) of sha1(normalize_text(text))."""
    return prefix + hashlib.sha1(normalize_text(text).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Collection:
    """Corpus, queries and labels, all keyed by string ids.

    `doc_texts[i]` is the text of `doc_ids[i]` (BEIR: title and text joined by a space, as BEIR's own evaluators do).
    `positives[qid]` lists the labelled relevant doc ids of a query, in file order; only queries with at least one
    positive that exists in the corpus are kept in `query_ids`. `negatives[qid]` lists negatives the input gave
    (FlagEmbedding "neg"), empty for other formats. `problems` are human sentences about what was skipped
    ("qrels.tsv: 3 rows name unknown doc ids, skipped"), shown by the CLI and the app. `source` says what was read,
    for people and manifests ("BEIR folder /data/scifact, split test", "pairs file /data/train.csv").
    """

    name: str
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]
    query_ids: tuple[str, ...]
    query_texts: tuple[str, ...]
    positives: dict[str, tuple[str, ...]]
    negatives: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    source: str = ""

    @cached_property
    def doc_index(self) -> dict[str, int]:
        """doc id -> position in `doc_ids` / `doc_texts` (built once, on first use)."""
        return {doc_id: i for i, doc_id in enumerate(self.doc_ids)}

    @cached_property
    def query_index(self) -> dict[str, int]:
        """query id -> position in `query_ids` / `query_texts` (built once, on first use)."""
        return {query_id: i for i, query_id in enumerate(self.query_ids)}


# ---------------------------------------------------------------------------------------------------------------------
# Entry point


def load_collection(path: str | Path, *, split: str = setting("split").default) -> Collection:
    """Read a BEIR folder, a pairs file or a FlagEmbedding JSONL file, chosen by what `path` is.

    split: the BEIR qrels split to read (ignored for files, which have no splits).
    A folder is read as BEIR; a .jsonl/.json file whose first record has a "pos" key (or a "neg" key and no
    positive column) as FlagEmbedding; any other .jsonl/.json/.csv/.tsv/.parquet file as pairs with auto-detected
    columns.
    """
    path = Path(path)
    if path.is_dir():
        return load_beir(path, split=split)
    suffix = _check_file(path)
    if suffix in (".jsonl", ".json"):
        records = _json_records(path, example='{"query": "...", "positive": "..."}')
        first = next(records)  # _json_records raises on an empty file, so there is a first record
        records = chain([first], records)
        # "neg" without a pairs positive column is FlagEmbedding missing its "pos": its reader names the line.
        keys = {key.strip().lower() for key in first[1]}
        if "pos" in first[1] or ("neg" in first[1] and not keys & set(POSITIVE_COLUMNS)):
            return _flag_from_records(path, records)
        return _pairs_from_json(path, records, None, None)
    return load_pairs(path)


# ---------------------------------------------------------------------------------------------------------------------
# BEIR


def beir_splits(folder: str | Path) -> dict[str, Path]:
    """The qrels splits a BEIR folder has: split name -> qrels file.

    Looks for `qrels/<split>.tsv` (BEIR's own layout), then `qrels_<split>.tsv`, and takes a plain `qrels.tsv` as
    the "test" split; where two files name the same split, the first found in that order wins.
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    if (folder / "qrels").is_dir():
        for qrels in sorted((folder / "qrels").glob("*.tsv")):
            found.setdefault(qrels.stem, qrels)
    for qrels in sorted(folder.glob("qrels_*.tsv")):
        found.setdefault(qrels.stem[len("qrels_"):], qrels)
    if (folder / "qrels.tsv").is_file() or (folder / "qrels.tsv").is_symlink():
        found.setdefault("test", folder / "qrels.tsv")
    return found


def load_beir(folder: str | Path, *, split: str = setting("split").default) -> Collection:
    """Read a BEIR folder: corpus.jsonl, queries.jsonl and the qrels of `split` (see `beir_splits`).

    Document text is title + " " + text, stripped. Qrels rows with score > 0 are positives, in file order; a header
    line is optional. Queries without a positive in the corpus are left out of `query_ids`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "is not a folder", fix=f"pass the folder itself; {_BEIR_LAYOUT}.")
    for required in ("corpus.jsonl", "queries.jsonl"):
        _check_entry(folder / required)
        if not (folder / required).is_file():
            present = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
            listing = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "") if present else "nothing"
            raise DataError(folder, f"has no {required} (found: {listing})", fix=f"{_BEIR_LAYOUT}.")
    splits = beir_splits(folder)
    if split not in splits:
        names = ", ".join(sorted(splits)) or "none (no qrels file)"
        raise DataError(folder, f"has no qrels for split {split!r}; splits found: {names}",
                        fix=f"pick one of the splits found; {_BEIR_LAYOUT}.")
    qrels_path = splits[split]
    problems: list[str] = []

    doc_ids, doc_texts, empty_docs = _read_beir_corpus(folder / "corpus.jsonl", problems)
    query_texts, empty_queries = _read_beir_queries(folder / "queries.jsonl", problems)
    doc_index = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    positives = _read_qrels(qrels_path, query_texts, doc_index, empty_queries, empty_docs, problems)

    query_ids = tuple(qid for qid in query_texts if qid in positives)
    if not query_ids:
        raise DataError(qrels_path, "no query has a positive (score > 0) that exists in the corpus: nothing to mine",
                        fix="check that the qrels ids match the _id values of corpus.jsonl and queries.jsonl.")
    collection = Collection(
        name=folder.resolve().name,
        doc_ids=tuple(doc_ids),
        doc_texts=tuple(doc_texts),
        query_ids=query_ids,
        query_texts=tuple(query_texts[qid] for qid in query_ids),
        positives={qid: tuple(positives[qid]) for qid in query_ids},
        problems=tuple(problems),
        source=f"BEIR folder {folder.resolve()}, split {split}",
    )
    # The index was needed for the qrels anyway; hand it over instead of building it twice.
    collection.__dict__["doc_index"] = doc_index
    return collection


def _read_beir_corpus(path: Path, problems: list[str]) -> tuple[list[str], list[str], set[str]]:
    """corpus.jsonl -> (doc ids, doc texts, ids of documents skipped as empty)."""
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    index: dict[str, int] = {}
    first_line = array("q")  # line of each kept document, for the "repeated _id" message; compact for 1M docs
    empty: dict[str, int] = {}  # id -> line of documents skipped as empty
    empty_tally, repeated = _Tally(), _Tally()
    example = '{"_id": "d1", "title": "...", "text": "..."}'
    for line, record in _json_records(path, example=example):
        doc_id = _record_id(path, line, record, example)
        text = _record_text(path, line, record, "text", example)
        title = _record_text(path, line, record, "title", example, required=False)
        doc_text = f"{title} {text}".strip()
        earlier = index.get(doc_id)
        if earlier is not None or doc_id in empty:
            earlier_text = doc_texts[earlier] if earlier is not None else ""
            if earlier_text != doc_text:
                earlier_line = first_line[earlier] if earlier is not None else empty[doc_id]
                raise DataError(path, f"_id {doc_id!r} repeated with different text (first on line {earlier_line})",
                                line=line, fix="give each document its own _id, or delete one of the two lines.")
            repeated.add(doc_id, line)
            continue
        if not doc_text:
            empty[doc_id] = line
            empty_tally.add(doc_id, line)
            continue
        index[doc_id] = len(doc_ids)
        doc_ids.append(doc_id)
        doc_texts.append(doc_text)
        first_line.append(line)
    if not doc_ids:
        raise DataError(path, "every document has empty text", fix="fill in the title or text fields.")
    if empty_tally.count:
        problems.append(f"{path.name}: {_n(empty_tally.count, 'document')} with empty text skipped "
                        f"{empty_tally.examples()}.")
    if repeated.count:
        problems.append(f"{path.name}: {_n(repeated.count, 'line')} repeated a document's _id and text "
                        f"{repeated.examples()}; kept one.")
    return doc_ids, doc_texts, set(empty)


def _read_beir_queries(path: Path, problems: list[str]) -> tuple[dict[str, str], set[str]]:
    """queries.jsonl -> (query id -> text in file order, ids of queries skipped as empty)."""
    texts: dict[str, str] = {}
    lines: dict[str, int] = {}
    empty: dict[str, int] = {}
    empty_tally = _Tally()
    example = '{"_id": "q1", "text": "..."}'
    for line, record in _json_records(path, example=example):
        query_id = _record_id(path, line, record, example)
        text = _record_text(path, line, record, "text", example).strip()
        if query_id in lines or query_id in empty:
            if texts.get(query_id, "") != text:
                earlier_line = lines.get(query_id) or empty[query_id]
                raise DataError(path, f"_id {query_id!r} repeated with different text (first on line {earlier_line})",
                                line=line, fix="give each query its own _id, or delete one of the two lines.")
            continue
        if not text:
            empty[query_id] = line
            empty_tally.add(query_id, line)
            continue
        texts[query_id] = text
        lines[query_id] = line
    if empty_tally.count:
        problems.append(f"{path.name}: {_n(empty_tally.count, 'query', 'queries')} with empty text skipped "
                        f"{empty_tally.examples()}.")
    return texts, set(empty)


def _read_qrels(path: Path, queries: dict[str, str], doc_index: dict[str, int], empty_queries: set[str],
                empty_docs: set[str], problems: list[str]) -> dict[str, dict[str, None]]:
    """A qrels TSV -> query id -> positive doc ids (an ordered set, file order). Only score > 0 counts."""
    positives: dict[str, dict[str, None]] = {}
    # Counted, not raised: qrels often cover more queries/docs than a trimmed corpus holds.
    unknown_queries, unknown_docs, to_empty, repeated = _Tally(), _Tally(), _Tally(), _Tally()
    not_positive = 0
    labelled: set[str] = set()  # known queries with at least one row scored > 0
    seen_row = False
    fix_columns = "each row is query-id<TAB>corpus-id<TAB>score (a header line with those names is optional)."
    for line, text in _text_lines(path):
        if not text.strip():
            continue
        seen_row = True
        fields = [f.strip() for f in (text.split("\t") if "\t" in text else text.split())]
        if len(fields) == 4:  # TREC qrels: query-id, iteration, doc-id, relevance
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise DataError(path, f"expected 3 columns (query-id, corpus-id, score), found {len(fields)}",
                            line=line, fix=fix_columns)
        query_id, doc_id, score_text = fields
        try:
            score = float(score_text)
        except ValueError:
            # A header is known by its names, not by being first: a headerless file's first judgement with a
            # word for a score must not vanish as if it were one.
            if all(_QRELS_HEADER.match(f) for f in fields):
                continue
            raise DataError(path, f"score {score_text!r} is not a number", line=line,
                            fix="the third column must be a number (relevance > 0 marks a positive); a header "
                                "line names its columns, like query-id<TAB>corpus-id<TAB>score.") from None
        if not score > 0:
            not_positive += 1
        elif query_id in empty_queries:
            to_empty.add(query_id, line)
        elif query_id not in queries:
            unknown_queries.add(query_id, line)
        else:
            labelled.add(query_id)
            if doc_id in empty_docs:
                to_empty.add(doc_id, line)
                continue
            if doc_id not in doc_index:
                unknown_docs.add(doc_id, line)
                continue
            row = positives.setdefault(query_id, {})
            if doc_id in row:
                repeated.add(f"{query_id}/{doc_id}", line)
            row[doc_id] = None
    if not seen_row:
        raise DataError(path, "the file is empty", fix=fix_columns)
    name = path.name
    for tally, what in ((unknown_queries, "unknown query ids (not in queries.jsonl)"),
                        (unknown_docs, "unknown doc ids (not in corpus.jsonl)"),
                        (to_empty, "a query or document skipped as empty")):
        if tally.count:
            verb = "names" if tally.count == 1 else "name"
            problems.append(f"{name}: {_n(tally.count, 'row')} {verb} {what} {tally.examples()}; skipped.")
    if repeated.count:
        problems.append(f"{name}: {_n(repeated.count, 'row')} repeated a (query, document) pair "
                        f"{repeated.examples()}; kept one.")
    if not_positive:
        problems.append(f"{name}: {_n(not_positive, 'row')} with score <= 0 ignored (not positives).")
    lost = len(labelled - positives.keys())
    if lost:
        problems.append(f"{name}: {_n(lost, 'query', 'queries')} lost every positive to the skips above; dropped.")
    unjudged = [query_id for query_id in queries if query_id not in labelled]
    if unjudged:  # normal when queries.jsonl serves several splits, but the count must be seen
        shown = ", ".join(unjudged[:3])
        problems.append(f"{name}: no positive (score > 0) for {_n(len(unjudged), 'query', 'queries')} of "
                        f"queries.jsonl ({'e.g. ' if len(unjudged) > 3 else ''}{shown}); left out (queries of "
                        "other splits, or unlabelled).")
    return positives


# The names a qrels header gives its columns: query-id, corpus-id, score (BEIR); qid, iter, docno, rel (TREC); ...
_QRELS_HEADER = re.compile(r"(query|q|topic|corpus|doc|document|passage|p|iter|iteration|score|rel|relevance|label"
                           r"|judgement|judgment|grade)([-_ ]?(id|no|num|number))?$", re.IGNORECASE)


def _record_id(path: Path, line: _Where, record: dict[str, Any], example: str) -> str:
    value = record.get("_id")
    # Some exports write numeric ids; qrels ids are read as text, so compare them as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        found = ("no _id field" if "_id" not in record else "_id is null" if value is None
                 else f"_id {value!r} is not a non-empty string")
        raise _error(path, line, found, f"every line needs a string _id, like {example}")
    return value.strip()


def _record_text(path: Path, line: _Where, record: dict[str, Any], key: str, example: str, *,
                 required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            found = f"no {key!r} field" if key not in record else f"{key!r} is null"
            raise _error(path, line, found, f"every line needs {key!r} as a string, like {example}")
        return ""
    if not isinstance(value, str):
        raise _error(path, line, f"{key!r} is {type(value).__name__}, not text", f"store {key!r} as a string.")
    return value


# ---------------------------------------------------------------------------------------------------------------------
# Pairs files


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
    suffix = _check_file(path)
    if suffix in (".jsonl", ".json"):
        records = _json_records(path, example='{"query": "...", "positive": "..."}')
        return _pairs_from_json(path, records, query_column, positive_column)
    if suffix == ".parquet":
        return _build_pairs(path, _parquet_pairs(path, query_column, positive_column))
    return _build_pairs(path, _csv_pairs(path, "\t" if suffix == ".tsv" else ",", query_column, positive_column))


# A triplet / n-tuple file's negative columns: negative, negatives, neg, negative_1, neg_2, hard_negative, ...
_NEGATIVE_COLUMN = re.compile(r"(hard[-_ ]?)?neg(ative)?s?([-_ ]?\d+)?$", re.IGNORECASE)


class _Columns(NamedTuple):
    query: str
    positive: str
    negatives: tuple[str, ...]


class _Row(NamedTuple):
    where: _Where
    query: Any
    positive: Any
    negatives: tuple[Any, ...]  # one value per _Columns.negatives column: a text, a list of texts, or None


def _pairs_from_json(path: Path, records: Iterator[tuple[_Where, dict[str, Any]]], query_column: str | None,
                     positive_column: str | None) -> Collection:
    first = next(records)
    records = chain([first], records)
    columns = _pick_columns(path, list(first[1]), query_column, positive_column, where=first[0])
    rows = (_Row(where, record.get(columns.query), record.get(columns.positive),
                 tuple(record.get(key) for key in columns.negatives)) for where, record in records)
    return _build_pairs(path, (columns, rows))


def _csv_pairs(path: Path, delimiter: str, query_column: str | None,
               positive_column: str | None) -> tuple[_Columns, Iterator[_Row]]:
    lines = _text_lines(path)
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
    columns = _pick_columns(path, header, query_column, positive_column, where=last)
    at = [header.index(key) for key in (columns.query, columns.positive, *columns.negatives)]

    def rows() -> Iterator[_Row]:
        start = last + 1
        try:
            for row in reader:
                if row:  # csv yields [] for blank lines
                    if len(row) != len(header):
                        raise DataError(path, f"row has {len(row)} fields but the header has {len(header)}",
                                        line=start, fix=f"quote fields that contain {separator} or a quote character.")
                    yield _Row(start, row[at[0]], row[at[1]], tuple(row[i] for i in at[2:]))
                start = last + 1
        except csv.Error as exc:
            raise DataError(path, f"cannot parse the row ({exc})", line=last, fix=parse_fix) from None

    return columns, rows()


def _parquet_pairs(path: Path, query_column: str | None,
                   positive_column: str | None) -> tuple[_Columns, Iterator[_Row]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rewrite = "re-write it with pandas.DataFrame.to_parquet or pyarrow.parquet.write_table."
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"is not a readable Parquet file ({_one_line(exc)})", fix=rewrite) from None
    schema = parquet.schema_arrow
    columns = _pick_columns(path, schema.names, query_column, positive_column)
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

    def rows() -> Iterator[_Row]:
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=65_536, columns=[columns.query, columns.positive,
                                                                          *columns.negatives]):
                values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                for query, positive, *negatives in zip(*values):
                    row += 1
                    yield _Row(f"row {row}", query, positive, tuple(negatives))
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise DataError(path, f"row {row + 1}: cannot be read ({_one_line(exc)})", fix=rewrite) from None

    return columns, rows()


def _pick_columns(path: Path, columns: list[str], query_column: str | None, positive_column: str | None, *,
                  where: _Where | None = None) -> _Columns:
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
    return _Columns(picked[0], picked[1], negatives)


def _located(path: Path, where: _Where | None, message: str, fix: str) -> DataError:
    return DataError(path, message, fix=fix) if where is None else _error(path, where, message, fix)


class _Builder:
    """Collects (query, positive[, negatives]) rows under text ids, collapsing duplicates, keeping first-seen order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.docs: dict[str, str] = {}
        self.queries: dict[str, str] = {}
        self.positives: dict[str, dict[str, None]] = {}
        self.negatives: dict[str, dict[str, None]] = {}
        self.repeated_pairs = 0
        self.empty_negatives = 0

    def query(self, where: _Where, value: Any, column: str) -> str:
        text = self._text(where, value, column, "query")
        query_id = text_id(text, "q")
        self.queries.setdefault(query_id, text)
        self.positives.setdefault(query_id, {})
        return query_id

    def positive(self, where: _Where, query_id: str, value: Any, column: str) -> None:
        doc_id = self._doc(self._text(where, value, column, "positive"))
        row = self.positives[query_id]
        if doc_id in row:
            self.repeated_pairs += 1
        row[doc_id] = None

    def negative(self, where: _Where, query_id: str, value: Any, column: str) -> None:
        if isinstance(value, str) and not value.strip():
            self.empty_negatives += 1
            return
        doc_id = self._doc(self._text(where, value, column, "negative"))
        self.negatives.setdefault(query_id, {})[doc_id] = None

    def _doc(self, text: str) -> str:
        doc_id = text_id(text, "d")
        self.docs.setdefault(doc_id, text)
        return doc_id

    def _text(self, where: _Where, value: Any, column: str, role: str) -> str:
        if value is None:
            raise _error(self.path, where, f"no {role} (column {column!r} is missing or null)",
                         f"give every row a {role} text, or delete the row.")
        if not isinstance(value, str):
            raise _error(self.path, where, f"the {role} in {column!r} is {type(value).__name__}, not text",
                         f"store the {role} as a string" + (" (a list of positives belongs in FlagEmbedding JSONL, "
                                                            '{"query": ..., "pos": [...]}).' if role == "positive"
                                                            else "."))
        text = value.strip()
        if not text:
            raise _error(self.path, where, f"empty {role} in column {column!r}",
                         f"fill in the {role} text, or delete the row.")
        return text

    def collection(self, kind: str) -> Collection:
        name = self.path.name
        problems: list[str] = []
        if self.repeated_pairs:
            problems.append(f"{name}: {_n(self.repeated_pairs, 'row')} repeated a (query, positive) pair "
                            "(after normalising case and spaces); kept one.")
        if self.empty_negatives:
            problems.append(f"{name}: {_n(self.empty_negatives, 'empty negative')} skipped.")
        negatives: dict[str, tuple[str, ...]] = {}
        negative_is_positive = 0
        for query_id, given in self.negatives.items():
            kept = tuple(d for d in given if d not in self.positives[query_id])
            negative_is_positive += len(given) - len(kept)
            if kept:
                negatives[query_id] = kept
        if negative_is_positive:
            problems.append(f"{name}: {_n(negative_is_positive, 'negative')} equal to a positive of the same "
                            "query dropped from its negatives.")
        return Collection(
            name=self.path.stem,
            doc_ids=tuple(self.docs),
            doc_texts=tuple(self.docs.values()),
            query_ids=tuple(self.queries),
            query_texts=tuple(self.queries.values()),
            positives={q: tuple(p) for q, p in self.positives.items()},
            negatives=negatives,
            problems=tuple(problems),
            source=f"{kind} file {self.path.resolve()}",
        )


def _build_pairs(path: Path, read: tuple[_Columns, Iterable[_Row]]) -> Collection:
    columns, rows = read
    builder = _Builder(path)
    for row in rows:
        query_id = builder.query(row.where, row.query, columns.query)
        builder.positive(row.where, query_id, row.positive, columns.positive)
        for column, value in zip(columns.negatives, row.negatives):
            for negative in value if isinstance(value, list) else [value]:
                if negative is None:  # an n-tuple row with fewer negatives than columns
                    builder.empty_negatives += 1
                else:
                    builder.negative(row.where, query_id, negative, column)
    return builder.collection("pairs")


# ---------------------------------------------------------------------------------------------------------------------
# FlagEmbedding


def load_flag(path: str | Path) -> Collection:
    """Read FlagEmbedding JSONL: {"query": str, "pos": [str, ...], "neg": [str, ...]} per line.

    Other keys (pos_scores, neg_scores, prompt, type) are ignored; "neg" may be missing or empty. The corpus is every
    pos and neg text, deduplicated by normalised text; `negatives` holds the given negs (minus any equal to a
    positive of the same query). A repeated query merges its positives and negatives.
    """
    path = Path(path)
    suffix = _check_file(path)
    if suffix not in (".jsonl", ".json"):
        raise DataError(path, f"FlagEmbedding data is JSON lines, not {suffix}",
                        fix='write one {"query": ..., "pos": [...], "neg": [...]} object per line to a .jsonl file.')
    return _flag_from_records(path, _json_records(path, example=_FLAG_EXAMPLE))


_FLAG_EXAMPLE = '{"query": "...", "pos": ["..."], "neg": ["..."]}'


def _flag_from_records(path: Path, records: Iterable[tuple[_Where, dict[str, Any]]]) -> Collection:
    builder = _Builder(path)
    for where, record in records:
        query_id = builder.query(where, record.get("query"), "query")
        positives = record.get("pos")
        if not isinstance(positives, list):
            found = ("no 'pos' field" if "pos" not in record else "'pos' is null" if positives is None
                     else f"'pos' is {type(positives).__name__}, not a list")
            raise _error(path, where, found, f"give every line a list of positive texts, like {_FLAG_EXAMPLE}")
        if not positives:
            raise _error(path, where, "'pos' is empty: a query without positives leaves nothing to mine",
                         "add at least one positive text, or delete the line.")
        for positive in positives:
            builder.positive(where, query_id, positive, "pos")
        negatives = record.get("neg", [])
        if not isinstance(negatives, list):
            raise _error(path, where, f"'neg' is {type(negatives).__name__}, not a list",
                         f"write negatives as a list of texts, like {_FLAG_EXAMPLE}")
        for negative in negatives:
            builder.negative(where, query_id, negative, "neg")
    return builder.collection("FlagEmbedding")


# ---------------------------------------------------------------------------------------------------------------------
# Reading helpers


def _check_entry(path: Path) -> None:
    """DataError for a name that exists but cannot be followed (a link loop, a dangling link); `Path.exists` and
    `is_file` answer False for those, which would read as "missing" when `ls` shows the name."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            raise DataError(path, f"is a link that cannot be followed ({exc.strerror})",
                            fix="point the link at the real file, or replace it with the file.") from None


def _check_file(path: Path) -> str:
    """The lower-case suffix of an existing, supported file; DataError otherwise."""
    _check_entry(path)
    if not path.exists():
        raise DataError(path, "no such file or folder", fix="check the path.")
    if not path.is_file():
        raise DataError(path, "is not a regular file", fix="pass a data file or a BEIR folder.")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(path, f"unsupported file type {suffix or '(no suffix)'!r}",
                        fix=f"use one of {', '.join(FILE_SUFFIXES)}, or a BEIR folder.")
    return suffix


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text with its line ending) for each line of a UTF-8 file, streamed; a leading BOM is dropped.

    Decoding line by line (not through a text-mode file) is what lets a non-UTF-8 byte be reported with its line.
    """
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror})", fix="check the path and its permissions.") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, f"byte 0x{raw[exc.start]:02x} (byte {exc.start + 1} of the line) is not UTF-8",
                                line=number, fix=_UTF8_FIX) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text


def _json_records(path: Path, *, example: str) -> Iterator[tuple[_Where, dict[str, Any]]]:
    """Objects of a JSONL file with their line numbers, or of a .json array with "record N"; raises on an empty file."""
    empty_fix = f"write one JSON object per line, like {example}"
    if path.suffix.lower() == ".json" and _starts_with_bracket(path):
        yield from _json_array(path, example)
        return
    seen = False
    for number, text in _text_lines(path):
        if not text.strip():
            continue
        seen = True
        try:
            record = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON ({exc.msg}, column {exc.colno})", line=number,
                            fix="each line must hold one complete JSON object; check quotes and brackets near that "
                                "column.") from None
        except (ValueError, RecursionError) as exc:  # a number of over 4,300 digits; brackets nested too deep
            raise DataError(path, f"invalid JSON ({_one_line(exc)})", line=number,
                            fix="each line must hold one flat JSON object of texts.") from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, found {type(record).__name__}", line=number,
                            fix=empty_fix)
        _check_record(path, number, record, _SURROGATE_ESCAPE.search(text) is not None)
        yield number, record
    if not seen:
        raise DataError(path, "the file is empty", fix=empty_fix)


def _starts_with_bracket(path: Path) -> bool:
    """Whether a .json file holds an array (else it is read as JSON lines, which many .json datasets are)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror})", fix="check the path and its permissions.") from None


def _json_array(path: Path, example: str) -> Iterator[tuple[_Where, dict[str, Any]]]:
    """A .json file holding one array of objects (read whole: JSON arrays cannot be streamed without a parser)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"byte 0x{raw[exc.start]:02x} is not UTF-8", line=raw.count(b"\n", 0, exc.start) + 1,
                        fix=_UTF8_FIX) from None
    try:
        records = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON ({exc.msg}, column {exc.colno})", line=exc.lineno,
                        fix="check quotes, commas and brackets near that column.") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(path, f"invalid JSON ({_one_line(exc)})", fix="write an array of flat JSON objects of "
                                                                          "texts.") from None
    if not records:
        raise DataError(path, "the array is empty", fix=f"add objects like {example}")
    suspicious = _SURROGATE_ESCAPE.search(text) is not None
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise _error(path, f"record {number}", f"expected a JSON object, found {type(record).__name__}",
                         f"make every array item an object like {example}")
        _check_record(path, f"record {number}", record, suspicious)
        yield f"record {number}", record


class _RepeatedKey(dict):
    """A decoded JSON object that named `repeated` more than once (json keeps the last value without a word)."""

    repeated: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook for json.loads: a dict, marked when a key repeats so the reader can say where."""
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen: set[str] = set()
    marked = _RepeatedKey(record)
    marked.repeated = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
    return marked


# One decoder for every line: json.loads with a hook builds a new one per call, which costs more than the parse.
_DECODER = json.JSONDecoder(object_pairs_hook=_object)

# An escaped UTF-16 surrogate. A pair of them is one character (an emoji); json.loads also decodes a lone one, into
# a str that cannot be encoded as UTF-8 and would fail later, far from the file, when it is hashed or saved.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_record(path: Path, where: _Where, record: dict[str, Any], suspicious: bool) -> None:
    """Refuse what json.loads accepts but would silently change or break later: a repeated key, a lone surrogate.

    suspicious: whether the raw text holds a surrogate escape at all, so the common case costs one regex search.
    """
    if isinstance(record, _RepeatedKey):
        raise _error(path, where, f"the key {record.repeated!r} appears twice in one object (JSON would keep only "
                                  "the last value)", "remove or rename one of the two.")
    if suspicious:
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _error(path, where, f"the escape \\u{ord(exc.object[exc.start]):04x} is half of a UTF-16 "
                                      "surrogate pair with no other half, not a character",
                         "delete it, or write the character it stands for (an emoji escaped as two halves, "
                         "like \\ud83d\\ude00, is fine).") from None


def _one_line(error: BaseException) -> str:
    """An exception's text on one line (library messages sometimes span several)."""
    return _SPACE.sub(" ", str(error)).strip() or type(error).__name__


def _error(path: Path, where: _Where, message: str, fix: str) -> DataError:
    """A DataError at a line number, or at "record N" / "row N" for formats without lines."""
    if isinstance(where, int):
        return DataError(path, message, line=where, fix=fix)
    return DataError(path, f"{where}: {message}", fix=fix)


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"


class _Tally:
    """Counts skipped lines and keeps the first few as examples for the problem sentence."""

    def __init__(self, keep: int = 3) -> None:
        self.count = 0
        self._keep = keep
        self._examples: list[str] = []

    def add(self, key: str, line: int) -> None:
        self.count += 1
        if len(self._examples) < self._keep:
            self._examples.append(f"{key} on line {line}")

    def examples(self) -> str:
        """'(e.g. d9 on line 4, d12 on line 7)', without 'e.g.' when every case is listed."""
        prefix = "e.g. " if self.count > len(self._examples) else ""
        return f"({prefix}{', '.join(self._examples)})"
