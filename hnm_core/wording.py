"""The words every user-facing sentence shares: a count with the noun that agrees with it, a time span, and an
exception's text on one line (library messages sometimes span several, and every hnm error is one line)."""

from __future__ import annotations

import re

__all__ = ["counted", "one_line", "duration"]

_SPACE = re.compile(r"\s+")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun that agrees with it ("1 duplicate", "2 duplicates", "1 query"/"3 queries" with
    `plural`)."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"


def one_line(error: BaseException) -> str:
    """An exception's text on one line."""
    return _SPACE.sub(" ", str(error)).strip() or type(error).__name__


def duration(seconds: float) -> str:
    """A time span as people say it: "40 s", "3 min", "2.5 h" (seconds under 90, minutes under 90)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
