"""FlagEmbedding JSONL: one {"query", "pos": [...], "neg": [...]} record per line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError
from .collection import Collection
from .pairs import PairsBuilder
from .reading import Where, check_file, json_records, located_error

__all__ = ["load_flag", "flag_from_records"]


def load_flag(path: str | Path) -> Collection:
    """Read FlagEmbedding JSONL: {"query": str, "pos": [str, ...], "neg": [str, ...]} per line.

    Other keys (pos_scores, neg_scores, prompt, type) are ignored; "neg" may be missing or empty. The corpus is every
    pos and neg text, deduplicated by normalised text; `negatives` holds the given negs (minus any equal to a
    positive of the same query). A repeated query merges its positives and negatives.
    """
    path = Path(path)
    suffix = check_file(path)
    if suffix not in (".jsonl", ".json"):
        raise DataError(path, f"FlagEmbedding data is JSON lines, not {suffix}",
                        fix='write one {"query": ..., "pos": [...], "neg": [...]} object per line to a .jsonl file.')
    return flag_from_records(path, json_records(path, example=_FLAG_EXAMPLE))


_FLAG_EXAMPLE = '{"query": "...", "pos": ["..."], "neg": ["..."]}'


def flag_from_records(path: Path, records: Iterable[tuple[Where, dict[str, Any]]]) -> Collection:
    builder = PairsBuilder(path)
    for where, record in records:
        query_id = builder.query(where, record.get("query"), "query")
        positives = record.get("pos")
        if not isinstance(positives, list):
            found = ("no 'pos' field" if "pos" not in record else "'pos' is null" if positives is None
                     else f"'pos' is {type(positives).__name__}, not a list")
            raise located_error(path, where, found, f"give every line a list of positive texts, like {_FLAG_EXAMPLE}")
        if not positives:
            raise located_error(path, where, "'pos' is empty: a query without positives leaves nothing to mine",
                         "add at least one positive text, or delete the line.")
        for positive in positives:
            builder.positive(where, query_id, positive, "pos")
        negatives = record.get("neg", [])
        if not isinstance(negatives, list):
            raise located_error(path, where, f"'neg' is {type(negatives).__name__}, not a list",
                         f"write negatives as a list of texts, like {_FLAG_EXAMPLE}")
        for negative in negatives:
            builder.negative(where, query_id, negative, "neg")
    return builder.collection("FlagEmbedding")
