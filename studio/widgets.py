"""Widgets built from hnm_core.settings.SETTINGS, so the app offers what the CLI offers, with the same help text,
ranges and choices.

Each setting's value lives in `state.settings()` (per session). A widget is keyed `setting:<name>`; Streamlit
forgets a widget's state when a page that does not draw it runs, so the widget is re-seeded from the settings dict
whenever its key is missing: a value chosen on Tune survives a visit to Explore. An optional setting (None = off)
is a checkbox plus its value widget; the last value is remembered while it is off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import streamlit as st

from hnm_core.settings import defaults, setting

from .state import settings

__all__ = ["setting_widget", "widget_key", "reset_settings", "replay_settings", "switch_teacher_kind"]

Kind = Literal["auto", "slider", "number", "select", "radio", "toggle"]

# Ranges of more steps than this are typed, not slid (a slider from -1e6 to 1e6 cannot pick 0.35).
_SLIDER_STEPS = 200


def widget_key(name: str) -> str:
    """The session-state key of a setting's value widget (tests drive widgets by it)."""
    return f"setting:{name}"


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _memory() -> dict[str, Any]:
    if "setting_memory" not in st.session_state:
        st.session_state["setting_memory"] = {}
    return st.session_state["setting_memory"]


def setting_widget(
    name: str,
    *,
    label: str | None = None,
    kind: Kind = "auto",
    lo: float | None = None,
    hi: float | None = None,
    step: float | None = None,
    suggested: Any = None,
    options: list[Any] | None = None,
    disabled: bool = False,
    container: Any = None,
    on_change: Callable[[], None] | None = None,
    placeholder: str | None = None,
) -> Any:
    """Draw the widget of setting `name` and return its value (None when an optional setting is off).

    label: shown text (default: the name in words); the table's help text and CLI flag go into the tooltip.
    kind: "auto" picks by type: multiselect for lists, selectbox for choices, checkbox for bools, slider for numbers
        whose range (from `lo`/`hi` or the table) is at most 200 steps, number input otherwise, text for str.
    lo, hi, step: override the table's range for a slider (e.g. the teacher's score range for the ceiling).
    suggested: the starting value when an optional setting is first switched on.
    options: the values to offer, in place of the table's choices (e.g. the qrels splits a folder has); a value
        outside them is replaced by the first.
    container: where to draw (default: the current container).
    on_change: called when the person changes the value, before the page reruns (a Streamlit widget callback).
    placeholder: grey hint shown in an empty text box.
    """
    spec = setting(name)
    where = container if container is not None else st
    store = settings()
    key = widget_key(name)
    memory = _memory()
    label = label or _label(name)
    st.session_state.setdefault("setting_labels", {})[name] = label  # what errors call it (errors.page_words)
    tooltip = f"{spec.help}\n\nCLI: `{spec.flag}`"
    on = True
    value_label = label
    if spec.optional:
        on_key = key + ":on"
        if on_key not in st.session_state:
            st.session_state[on_key] = store[name] is not None
        on = where.checkbox(label, key=on_key, help=tooltip + " Untick to turn the rule off.", disabled=disabled)
        value_label = f"{label} value"

    lo = lo if lo is not None else spec.minimum
    hi = hi if hi is not None else spec.maximum
    step = step if step is not None else spec.step
    numeric = spec.type in (int, float) and not spec.choices
    if numeric:
        lo, hi = _typed(spec.type, lo), _typed(spec.type, hi)
        step = _typed(spec.type, step) if step is not None else (1 if spec.type is int else 0.01)
    start = store[name]
    if start is None:
        start = memory.get(name, suggested)
    if start is None:
        start = spec.default if spec.default is not None else (lo if lo is not None else spec.type())
    choices = list(options) if options is not None else list(spec.choices or ())
    if key not in st.session_state:
        st.session_state[key] = list(start) if spec.multiple else start
    if options is not None and st.session_state[key] not in choices:
        st.session_state[key] = choices[0]
    if numeric:  # a range that moved (another pool, another teacher) must still hold the value
        st.session_state[key] = _clamp(spec.type(st.session_state[key]), lo, hi)

    off = disabled or not on
    visibility = "collapsed" if spec.optional else "visible"
    if spec.multiple:
        value: Any = tuple(where.multiselect(value_label, choices, key=key, help=tooltip, disabled=off,
                                             label_visibility=visibility))
    elif choices and kind == "radio":
        value = where.radio(value_label, choices, key=key, help=tooltip, disabled=off, horizontal=True,
                            label_visibility=visibility, on_change=on_change)
    elif choices:
        value = where.selectbox(value_label, choices, key=key, help=tooltip, disabled=off,
                                label_visibility=visibility)
    elif spec.type is bool:
        draw = where.toggle if kind == "toggle" else where.checkbox
        value = draw(value_label, key=key, help=tooltip, disabled=off)
    elif numeric and (kind == "slider" or (kind == "auto" and lo is not None and hi is not None
                                           and (hi - lo) / step <= _SLIDER_STEPS)):
        value = where.slider(value_label, min_value=lo, max_value=hi, step=step, key=key, help=tooltip,
                             disabled=off, label_visibility=visibility)
    elif numeric:
        # a learning rate (2e-5) would show as 0.00 in the default two decimals
        small = spec.type is float and step is not None and step < 1e-3
        value = where.number_input(value_label, min_value=lo, max_value=hi, step=step, key=key, help=tooltip,
                                   disabled=off, label_visibility=visibility, format="%.1e" if small else None)
    else:
        value = where.text_input(value_label, key=key, help=tooltip, disabled=off, label_visibility=visibility,
                                 placeholder=placeholder)
    memory[name] = value
    store[name] = value if on else None
    return store[name]


def _typed(kind: type, value: float | None) -> Any:
    return None if value is None else kind(value)


def _clamp(value: Any, lo: Any, hi: Any) -> Any:
    if lo is not None and value < lo:
        return lo
    if hi is not None and value > hi:
        return hi
    return value


def _forget_widgets(names: Iterable[str]) -> None:
    for name in names:
        for key in (widget_key(name), widget_key(name) + ":on"):
            st.session_state.pop(key, None)
        _memory().pop(name, None)


def reset_settings(names: Iterable[str]) -> None:
    """Put `names` back to their defaults (use as a button's on_click, before the widgets are drawn)."""
    names = list(names)
    base = defaults()
    settings().update({name: base[name] for name in names})
    _forget_widgets(names)


def replay_settings(values: dict[str, Any]) -> None:
    """Set settings from a validated dict (a manifest's settings); their widgets re-seed on the next run."""
    settings().update(values)
    _forget_widgets(values)


def switch_teacher_kind() -> None:
    """on_change of the teacher-kind radio: each kind keeps its own teacher model. A bi-encoder name left in the box
    would be loaded as a cross-encoder with a random head, so the cross-encoder box starts empty (its first value is
    a folder the person types) and the bi-encoder box starts at the miner's model; each box's last value returns
    when its kind is picked again. Only a person's switch swaps names: a reset or a replayed manifest sets kind and
    model together."""
    store = settings()
    new = st.session_state[widget_key("teacher")]
    names = st.session_state.setdefault("teacher_model_by_kind", {})
    names[store["teacher"]] = store["teacher_model"]
    store["teacher_model"] = names.get(new, store["model"] if new == "bi-encoder" else "")
    st.session_state.pop(widget_key("teacher_model"), None)
