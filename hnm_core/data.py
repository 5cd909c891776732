"""Stage 1, data: read a retrieval collection into one in-memory model.

Readers: a BEIR folder, a pairs file (JSONL / CSV / Parquet with query + positive columns), FlagEmbedding JSONL.
All produce a `Collection`. Bad input raises `DataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

__all__ = ["Collection", "normalize_text", "text_id", "load_collection"]

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace: two texts equal after this are treated as duplicates."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_id(text: str, prefix: str) -> str:
    """A stable id for a text that came without one: `prefix` + 12 hex chars of sha1(normalize_text(text))."""
    return prefix + hashlib.sha1(normalize_text(text).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Collection:
    """Corpus, queries and labels, all keyed by string ids.

    `doc_texts[i]` is the text of `doc_ids[i]` (BEIR: title and text joined by a space, as BEIR's own evaluators do).
    `positives[qid]` lists the labelled relevant doc ids of a query, in file order; only queries with at least one
    positive that exists in the corpus are kept in `query_ids`. `negatives[qid]` lists negatives the input gave
    (FlagEmbedding "neg"), empty for other formats. `problems` are human sentences about what was skipped
    ("qrels.tsv: 3 rows name unknown doc ids, skipped"), shown by the CLI and the app.
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

    @property
    def doc_index(self) -> dict[str, int]:
        ...

    @property
    def query_index(self) -> dict[str, int]:
        ...


def load_collection(path: str | Path, *, split: str = "test") -> Collection:
    """Read a BEIR folder, a pairs file or a FlagEmbedding JSONL file, chosen by what `path` is."""
    raise DataError(path, "not implemented yet")
