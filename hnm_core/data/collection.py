"""The in-memory model every reader produces: a `Collection` (corpus, queries, labels by string id), and
the text normalisation that decides what counts as a duplicate.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

__all__ = ["normalize_text", "text_id", "Collection"]


_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace: two texts equal after this are treated as duplicates."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_id(text: str, prefix: str) -> str:
    """A stable id for a text that came without one: `prefix` + 16 hex chars (64 bits: collisions stay unlikely at
    millions of texts) of sha1(normalize_text(text))."""
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
