"""BEIR folders: corpus.jsonl, queries.jsonl and qrels/<split>.tsv (or qrels.tsv for the test split).
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import DataError
from ..settings import setting
from ..wording import counted
from .collection import Collection
from .reading import Tally, Where, check_entry, json_records, located_error, text_lines

__all__ = ["beir_splits", "load_beir"]


_BEIR_LAYOUT = ("a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv or qrels_<split>.tsv (a plain "
                "qrels.tsv is the test split)")


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
    line is optional and says which columns are the query, the document and the score (other columns are not read);
    without one, 4 columns are TREC's (qid, 0 or Q0, docid, rel) or refused. Queries without a positive in the corpus
    are left out of `query_ids`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "is not a folder", fix=f"pass the folder itself; {_BEIR_LAYOUT}.")
    for required in ("corpus.jsonl", "queries.jsonl"):
        check_entry(folder / required)
        if not (folder / required).is_file():
            present = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
            listing = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "") if present else "nothing"
            raise DataError(folder, f"has no {required} (found: {listing})", fix=f"{_BEIR_LAYOUT}.")
    splits = beir_splits(folder)
    if not splits:  # no split to pick: say where the labels go
        raise DataError(folder, "has no qrels file, so no labelled positives",
                        fix="add the labels as qrels/<split>.tsv or qrels_<split>.tsv (a plain qrels.tsv is the test "
                            "split), with the columns query-id, corpus-id, score")
    if split not in splits:
        raise DataError(folder, f"has no qrels for split {split!r}; splits found: {', '.join(sorted(splits))}",
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
    empty_tally, repeated = Tally(), Tally()
    example = '{"_id": "d1", "title": "...", "text": "..."}'
    for line, record in json_records(path, example=example):
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
        problems.append(f"{path.name}: {counted(empty_tally.count, 'document')} with empty text skipped "
                        f"{empty_tally.examples()}.")
    if repeated.count:
        problems.append(f"{path.name}: {counted(repeated.count, 'line')} repeated a document's _id and text "
                        f"{repeated.examples()}; kept one.")
    return doc_ids, doc_texts, set(empty)


def _read_beir_queries(path: Path, problems: list[str]) -> tuple[dict[str, str], set[str]]:
    """queries.jsonl -> (query id -> text in file order, ids of queries skipped as empty)."""
    texts: dict[str, str] = {}
    lines: dict[str, int] = {}
    empty: dict[str, int] = {}
    empty_tally = Tally()
    example = '{"_id": "q1", "text": "..."}'
    for line, record in json_records(path, example=example):
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
        problems.append(f"{path.name}: {counted(empty_tally.count, 'query', 'queries')} with empty text skipped "
                        f"{empty_tally.examples()}.")
    return texts, set(empty)


def _read_qrels(path: Path, queries: dict[str, str], doc_index: dict[str, int], empty_queries: set[str],
                empty_docs: set[str], problems: list[str]) -> dict[str, dict[str, None]]:
    """A qrels TSV -> query id -> positive doc ids (an ordered set, file order). Only score > 0 counts."""
    positives: dict[str, dict[str, None]] = {}
    # Counted, not raised: qrels often cover more queries/docs than a trimmed corpus holds.
    unknown_queries, unknown_docs, to_empty, repeated = Tally(), Tally(), Tally(), Tally()
    not_positive = 0
    labelled: set[str] = set()  # known queries with at least one row scored > 0
    seen_row = False
    header: _Header | None = None  # the columns the last header line named
    for line, text in text_lines(path):
        if not text.strip():
            continue
        seen_row = True
        fields = [f.strip() for f in (text.split("\t") if "\t" in text else text.split())]
        while len(fields) > 3 and not fields[-1]:  # a row ending in a tab
            fields.pop()
        # A header is known by its names, not by being first: a headerless file's first judgement with a word for
        # a score must not vanish as if it were one.
        named = _header(fields, line)
        if named is not None:
            header = named
            continue
        query_id, doc_id, score_text = _judgement(path, line, fields, header)
        try:
            score = float(score_text)
        except ValueError:
            raise DataError(path, f"score {score_text!r} is not a number", line=line,
                            fix="the score column must be a number (relevance > 0 marks a positive); a header "
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
        raise DataError(path, "the file is empty", fix=_FIX_COLUMNS)
    name = path.name
    for tally, what in ((unknown_queries, "unknown query ids (not in queries.jsonl)"),
                        (unknown_docs, "unknown doc ids (not in corpus.jsonl)"),
                        (to_empty, "a query or document skipped as empty")):
        if tally.count:
            verb = "names" if tally.count == 1 else "name"
            problems.append(f"{name}: {counted(tally.count, 'row')} {verb} {what} {tally.examples()}; skipped.")
    if repeated.count:
        problems.append(f"{name}: {counted(repeated.count, 'row')} repeated a (query, document) pair "
                        f"{repeated.examples()}; kept one.")
    if not_positive:
        problems.append(f"{name}: {counted(not_positive, 'row')} with score <= 0 ignored (not positives).")
    lost = len(labelled - positives.keys())
    if lost:
        problems.append(f"{name}: {counted(lost, 'query', 'queries')} lost every positive to the skips above; dropped.")
    unjudged = [query_id for query_id in queries if query_id not in labelled]
    if unjudged:  # normal when queries.jsonl serves several splits, but the count must be seen
        shown = ", ".join(unjudged[:3])
        problems.append(f"{name}: no positive (score > 0) for {counted(len(unjudged), 'query', 'queries')} of "
                        f"queries.jsonl ({'e.g. ' if len(unjudged) > 3 else ''}{shown}); left out (queries of "
                        "other splits, or unlabelled).")
    return positives


# The names a qrels header gives its columns: query-id, corpus-id, score (BEIR); qid, iter, docno, rel (TREC); ...
_QRELS_NAMES = {"query": ("query", "q", "topic"), "doc": ("corpus", "doc", "document", "passage", "p"),
                "iter": ("iter", "iteration"),
                "score": ("score", "rel", "relevance", "label", "judgement", "judgment", "grade")}
_ROLE = {name: role for role, names in _QRELS_NAMES.items() for name in names}
_QRELS_HEADER = re.compile(rf"({'|'.join(_ROLE)})(?:[-_ ]?(?:id|no|num|number))?", re.IGNORECASE)
_FIX_COLUMNS = "each row is query-id<TAB>corpus-id<TAB>score (a header line with those names is optional)."


class _Header(NamedTuple):
    """A qrels header line: where its query, document and score columns are, and all the names it gives."""

    query: int
    doc: int
    score: int
    names: tuple[str, ...]
    line: int


def _header(fields: list[str], line: int) -> _Header | None:
    """The header `fields` make, or None for a judgement: a header names a query, a document and a score column
    (the first of each; other columns, an annotator say, are left unread)."""
    found: dict[str, int] = {}
    for i, name in enumerate(fields):
        match = _QRELS_HEADER.fullmatch(name)
        if match is None and i == 0:  # an id: a judgement (cheap, most rows stop here)
            return None
        if match is not None:
            found.setdefault(_ROLE[match.group(1).lower()], i)
    if not {"query", "doc", "score"} <= found.keys():
        return None
    return _Header(found["query"], found["doc"], found["score"], tuple(fields), line)


def _judgement(path: Path, line: int, fields: list[str], header: _Header | None) -> tuple[str, str, str]:
    """(query id, doc id, score) of a row: in the columns its header names, else query-id, corpus-id, score, or
    TREC's qid, iter, docno, rel when the second of four columns is the iteration (0 or Q0)."""
    if header is not None:
        if not max(header.query, header.doc, header.score) < len(fields) <= len(header.names):
            raise DataError(path, f"expected {len(header.names)} columns ({', '.join(header.names)}: the header on "
                            f"line {header.line}), found {len(fields)}", line=line, fix=_FIX_COLUMNS)
        return fields[header.query], fields[header.doc], fields[header.score]
    if len(fields) == 4:
        if fields[1].upper() not in ("0", "Q0"):
            raise DataError(path, f"4 columns without a header, and the second ({fields[1]!r}) is not TREC's "
                            "iteration column (0 or Q0), so which column holds the document and which the score "
                            "is unknown", line=line,
                            fix="add a header line naming the columns, like query-id<TAB>corpus-id<TAB>score<TAB>"
                                "annotator (BEIR's names; a column with another name is not read).")
        return fields[0], fields[2], fields[3]
    if len(fields) != 3:
        raise DataError(path, f"expected 3 columns (query-id, corpus-id, score), found {len(fields)}", line=line,
                        fix=_FIX_COLUMNS)
    return fields[0], fields[1], fields[2]


def _record_id(path: Path, line: Where, record: dict[str, Any], example: str) -> str:
    value = record.get("_id")
    # Some exports write numeric ids; qrels ids are read as text, so compare them as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        found = ("no _id field" if "_id" not in record else "_id is null" if value is None
                 else f"_id {value!r} is not a non-empty string")
        raise located_error(path, line, found, f"every line needs a string _id, like {example}")
    return value.strip()


def _record_text(path: Path, line: Where, record: dict[str, Any], key: str, example: str, *,
                 required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            found = f"no {key!r} field" if key not in record else f"{key!r} is null"
            raise located_error(path, line, found, f"every line needs {key!r} as a string, like {example}")
        return ""
    if not isinstance(value, str):
        raise located_error(path, line, f"{key!r} is {type(value).__name__}, not text", f"store {key!r} as a string.")
    return value
