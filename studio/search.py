"""Query search for the Explore page: the queries a few typed words find, the best matches first."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["search_queries"]

_WORD = re.compile(r"\w+")


def search_queries(ids: Sequence[str], texts: Sequence[str], search: str) -> list[str]:
    """The ids, of `ids` aligned with `texts`, whose id or text holds every word of `search` (case-insensitive),
    best first:

    1. the id or the whole text is the search ("vitamin d");
    2. the words appear together, in order ("vitamin d : shedding some light");
    3. each appears as a whole word, anywhere;
    4. the same, but the last word only starts a word: it may be half typed ("vitam", "q0").

    A fragment inside a word never matches ("tamin" finds nothing), so "vitamin d" lists every query about vitamin D
    before "vitamin b12 deficiency" (tier 4). Ties keep the given order; a search without words returns every id.
    """
    words = _WORD.findall(search.casefold())
    if not words:
        return list(ids)
    ranked = []
    for position, (qid, text) in enumerate(zip(ids, texts, strict=True)):
        tier = _tier(words, qid.casefold(), _WORD.findall(text.casefold()))
        if tier is not None:
            ranked.append((tier, position, qid))
    return [qid for _, _, qid in sorted(ranked)]


def _tier(words: list[str], qid: str, text_words: list[str]) -> int | None:
    id_words = _WORD.findall(qid)
    if words == id_words or words == text_words:
        return 0
    n = len(words)
    if any(text_words[i:i + n] == words for i in range(len(text_words) - n + 1)):
        return 1
    known = set(text_words) | set(id_words)
    if all(word in known for word in words):
        return 2
    *whole, typing = words
    if all(word in known for word in whole) and any(w.startswith(typing) for w in known):
        return 3
    return None
