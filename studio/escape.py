"""Text from users' files, made safe to show: Markdown elements get it backslash-escaped (`plain`), plotly hover
labels HTML-escaped (`hover_text`). An id, path or passage never becomes a link, an image, a formula or a tag."""

from __future__ import annotations

import html
import re
import textwrap

__all__ = ["plain", "hover_text"]


# Characters Streamlit's Markdown gives a meaning to: CommonMark punctuation, $ (LaTeX) and : (":red[...]" colour
# directives and ":emoji:" shortcodes).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """`text` for st.markdown / st.error and the other Markdown elements, shown as typed: every Markdown, LaTeX and
    HTML character is backslash-escaped, so an id, path or passage from a user's file never becomes a link, an
    image, a formula or a tag."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def hover_text(text: str, *, width: int = 80, limit: int = 600) -> str:
    """`text` for a plotly hover label: shortened to `limit` characters, wrapped at `width`, HTML-escaped line by
    line (so a wrap never splits an entity) and joined with <br>. Quotes stay as they are: plotly decodes only a
    few named entities, and quotes are harmless in text content."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    lines = textwrap.wrap(text, width=width) or [""]
    return "<br>".join(html.escape(line, quote=False) for line in lines)
