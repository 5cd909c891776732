"""BM25's tokenizer. Applied the same way to documents and queries:

1. Unicode NFKC normalisation (full-width letters, ligatures and compatibility digits become their plain forms),
2. `str.casefold()` (lowercasing that also folds "ß" to "ss"),
3. word tokens are the maximal runs of `\\w` characters (`re.findall(r"\\w+", ...)`): letters, digits and "_" in any
   script, so "state-of-the-art" gives four tokens and "café" one; punctuation and whitespace are dropped,
4. optionally (`stopwords=True`) tokens in scikit-learn's `ENGLISH_STOP_WORDS` (318 words) are removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from itertools import compress

import numpy as np

from ..settings import setting

__all__ = ["tokenize", "tokenize_many", "joined_tokens", "english_stopwords", "SEP"]


_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    # Imported on first use: scikit-learn is slow to import and only this option needs it.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def tokenize(text: str, *, stopwords: bool = setting("stopwords").default) -> list[str]:
    """Tokens of `text` as BM25 sees them (NFKC, casefold, `\\w+` runs, optionally no English stopwords)."""
    tokens = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if stopwords:
        drop = english_stopwords()
        return [t for t in tokens if t not in drop]
    return tokens


# Documents joined by this character are tokenized in one pass: it is not a word character, so no token spans two
# documents, and NFKC and casefold leave it alone and never compose across it (it is a starter that composes with
# nothing), so each document's tokens are those `tokenize` gives it alone. A text holding it has it replaced by a
# space, which splits words exactly as it does.
SEP = "\x00"


_WORD_OR_SEP = re.compile(r"\w+|\x00")


# ASCII text needs neither NFKC (identity) nor casefold (= lower), and its \w is [A-Za-z0-9_]: mapping every other
# ASCII character to a space and splitting on whitespace gives the same tokens, at C speed (str.translate has an
# ASCII fast path), while the Python regex walks the text character by character.
_ASCII_SPACES = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) in "_\x00")})


def joined_tokens(texts: Sequence[str]) -> list[str]:
    """The tokens of `texts` in order, with one `SEP` token after each text but the last (stopwords kept)."""
    joined = SEP.join(texts)
    if joined.count(SEP) != max(0, len(texts) - 1):
        joined = SEP.join(t.replace(SEP, " ") for t in texts)
    if joined.isascii():
        return joined.replace(SEP, " \x00 ").lower().translate(_ASCII_SPACES).split()
    return _WORD_OR_SEP.findall(unicodedata.normalize("NFKC", joined).casefold())


def tokenize_many(texts: Sequence[str], *, stopwords: bool = setting("stopwords").default) -> tuple[list[str],
                                                                                                       np.ndarray]:
    """The tokens of all `texts` in order, as one list, and the number each text has (int64): the same tokens as
    `tokenize` on each text, in a few C-level passes over the joined texts instead of three calls per text."""
    tokens = joined_tokens(texts)
    is_sep = np.fromiter(map(SEP.__eq__, tokens), dtype=bool, count=len(tokens))
    keep = ~is_sep
    if stopwords:
        keep &= ~np.fromiter(map(english_stopwords().__contains__, tokens), dtype=bool, count=len(tokens))
    doc_of_token = np.cumsum(is_sep)[keep]
    return list(compress(tokens, keep)), np.bincount(doc_of_token, minlength=len(texts)).astype(np.int64)
