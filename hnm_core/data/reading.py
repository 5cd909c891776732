"""What every reader shares: checking a path, streaming text lines and JSON records (JSONL or one JSON array),
refusing what would fail far from the file (lone UTF-16 surrogates, repeated keys), and one-line located errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..wording import one_line

__all__ = ["FILE_SUFFIXES", "Where", "Tally", "located_error", "check_file", "check_entry", "json_records", "text_lines"]


FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_UTF8_FIX = "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8` (use its real encoding)."


# Where a problem is: a line number, or "record 3" / "row 3" for formats without meaningful lines.
Where = int | str


def check_entry(path: Path) -> None:
    """DataError for a name that exists but cannot be followed (a link loop, a dangling link); `Path.exists` and
    `is_file` answer False for those, which would read as "missing" when `ls` shows the name."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            raise DataError(path, f"is a link that cannot be followed ({exc.strerror})",
                            fix="point the link at the real file, or replace it with the file.") from None


def check_file(path: Path) -> str:
    """The lower-case suffix of an existing, supported file; DataError otherwise."""
    check_entry(path)
    if not path.exists():
        raise DataError(path, "no such file or folder", fix="check the path.")
    if not path.is_file():
        raise DataError(path, "is not a regular file", fix="pass a data file or a BEIR folder.")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(path, f"unsupported file type {suffix or '(no suffix)'!r}",
                        fix=f"use one of {', '.join(FILE_SUFFIXES)}, or a BEIR folder.")
    return suffix


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
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


def json_records(path: Path, *, example: str) -> Iterator[tuple[Where, dict[str, Any]]]:
    """Objects of a JSONL file with their line numbers, or of a .json array with "record N"; raises on an empty file."""
    empty_fix = f"write one JSON object per line, like {example}"
    if path.suffix.lower() == ".json" and _starts_with_bracket(path):
        yield from _json_array(path, example)
        return
    seen = False
    for number, text in text_lines(path):
        if not text.strip():
            continue
        seen = True
        try:
            record = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            exc = _line_error(text, exc)
            raise DataError(path, f"invalid JSON ({exc.msg}, column {exc.colno})", line=number,
                            fix="each line must hold one complete JSON object; check quotes and brackets near that "
                                "column.") from None
        except (ValueError, RecursionError) as exc:  # a number of over 4,300 digits; brackets nested too deep
            raise DataError(path, f"invalid JSON ({one_line(exc)})", line=number,
                            fix="each line must hold one flat JSON object of texts.") from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, found {type(record).__name__}", line=number,
                            fix=empty_fix)
        _check_record(path, number, record, _SURROGATE_ESCAPE.search(text) is not None)
        yield number, record
    if not seen:
        raise DataError(path, "the file is empty", fix=empty_fix)


def _line_error(text: str, exc: json.JSONDecodeError) -> json.JSONDecodeError:
    """The error of one JSON line decoded without its line end. With it, a line cut short is reported at "column 1"
    (the parser skips the newline as whitespace and fails on the next line) or as a control character in a string."""
    try:
        _DECODER.decode(text.rstrip("\r\n"))
    except json.JSONDecodeError as bare:
        return bare
    return exc


def _end_of_text(text: str, exc: json.JSONDecodeError) -> tuple[int, int]:
    """(line, column) of a JSON error, moved back from past the end of the text to its last character + 1: a file cut
    short fails at its end, and the blank lines after it would put that at "column 1" of a line that holds nothing."""
    pos = min(exc.pos, len(text.rstrip()))
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


def _starts_with_bracket(path: Path) -> bool:
    """Whether a .json file holds an array (else it is read as JSON lines, which many .json datasets are)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror})", fix="check the path and its permissions.") from None


def _json_array(path: Path, example: str) -> Iterator[tuple[Where, dict[str, Any]]]:
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
        line, column = _end_of_text(text, exc)
        raise DataError(path, f"invalid JSON ({exc.msg}, column {column})", line=line,
                        fix="check quotes, commas and brackets near that column.") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(path, f"invalid JSON ({one_line(exc)})", fix="write an array of flat JSON objects of "
                                                                          "texts.") from None
    if not records:
        raise DataError(path, "the array is empty", fix=f"add objects like {example}")
    suspicious = _SURROGATE_ESCAPE.search(text) is not None
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise located_error(path, f"record {number}", f"expected a JSON object, found {type(record).__name__}",
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


def _check_record(path: Path, where: Where, record: dict[str, Any], suspicious: bool) -> None:
    """Refuse what json.loads accepts but would silently change or break later: a repeated key, a lone surrogate.

    suspicious: whether the raw text holds a surrogate escape at all, so the common case costs one regex search.
    """
    if isinstance(record, _RepeatedKey):
        raise located_error(path, where, f"the key {record.repeated!r} appears twice in one object (JSON would keep only "
                                  "the last value)", "remove or rename one of the two.")
    if suspicious:
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise located_error(path, where, f"the escape \\u{ord(exc.object[exc.start]):04x} is half of a UTF-16 "
                                      "surrogate pair with no other half, not a character",
                         "delete it, or write the character it stands for (an emoji escaped as two halves, "
                         "like \\ud83d\\ude00, is fine).") from None


def located_error(path: Path, where: Where, message: str, fix: str) -> DataError:
    """A DataError at a line number, or at "record N" / "row N" for formats without lines."""
    if isinstance(where, int):
        return DataError(path, message, line=where, fix=fix)
    return DataError(path, f"{where}: {message}", fix=fix)


class Tally:
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
