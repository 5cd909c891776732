"""The words every user-facing sentence shares: a count with the noun that agrees with it, and an exception's text
on one line (library messages sometimes span several, and every hnm error is one line)."""

from __future__ import annotations

import re

__all__ = ["counted", "one_line"]

_SPACE = re.compile(r"\s+")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun that agrees with it ("1 duplicate", "2 duplicates", "1 query"/"3 queries" with
    `plural`)."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"


def one_line(error: BaseException) -> str:
    """An exception's text on one line."""
    return _SPACE.sub(" ", str(error)).strip() or type(error).__name__
