"""How a page shows what went wrong: an HnmError (bad data, a setting out of range, a model that will not load)
is the page's error message, in the page's words (`page_words`: the CLI's flags become the labels of the widgets
that set them), escaped so a path or id in it shows as typed. Any other exception is a bug and propagates to
Streamlit's traceback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from hnm_core.errors import HnmError
from hnm_core.settings import SETTINGS

from .escape import plain

__all__ = ["shown_errors", "page_words", "PYTHON_ONLY"]

# Phrases of hnm_core's messages that name what only a Python caller can set (no widget sets it), and what the
# page says instead; tests/test_app.py checks each one still occurs in hnm_core, so the rewrite cannot go stale.
PYTHON_ONLY: dict[str, str] = {
    " or name them with query_column= / positive_column=": "",
}
_FLAGS = {s.flag: s for s in SETTINGS}
_FLAG = re.compile(r"--[a-z][a-z0-9-]*(?: ([A-Za-z0-9_.-]+))?")


def page_words(message: str) -> str:
    """`message` as the studio says it: each setting's CLI flag (`--teacher bi-encoder`) becomes the label of the
    widget that sets it on this session's pages (“Teacher kind: bi-encoder”), Python-only arguments are left out
    (PYTHON_ONLY). The CLI keeps its flags: only the studio calls this."""
    for phrase, said in PYTHON_ONLY.items():
        message = message.replace(phrase, said)
    labels = st.session_state.get("setting_labels", {})

    def label(match: re.Match) -> str:
        flag, value = match.group(0).split(" ", 1)[0], match.group(1)
        spec = _FLAGS.get(flag)
        if spec is None:
            return match.group(0)
        name = labels.get(spec.name, spec.name.replace("_", " ").capitalize())
        if value is not None and spec.choices and value in map(str, spec.choices):
            return f"“{name}: {value}”"
        return f"“{name}”" + (f" {value}" if value is not None else "")

    return _FLAG.sub(label, message)


@contextmanager
def shown_errors(*, stop: bool = False) -> Iterator[None]:
    """Show an HnmError raised in the block with st.error; the page then goes on after the block, or stops there
    with `stop` (for a page that has nothing to draw without the block's result)."""
    try:
        yield
    except HnmError as error:
        st.error(plain(page_words(str(error))))
        if stop:
            st.stop()
