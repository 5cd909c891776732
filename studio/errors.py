"""How a page shows what went wrong: an HnmError (bad data, a setting out of range, a model that will not load)
is the page's error message, escaped so a path or id in it shows as typed. Any other exception is a bug and
propagates to Streamlit's traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from hnm_core.errors import HnmError

from .escape import plain

__all__ = ["shown_errors"]


@contextmanager
def shown_errors(*, stop: bool = False) -> Iterator[None]:
    """Show an HnmError raised in the block with st.error; the page then goes on after the block, or stops there
    with `stop` (for a page that has nothing to draw without the block's result)."""
    try:
        yield
    except HnmError as error:
        st.error(plain(str(error)))
        if stop:
            st.stop()
