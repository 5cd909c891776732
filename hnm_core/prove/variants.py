"""Variants of the hnm arm as the command line gives them: `--variant NAME=FLAGS`, FLAGS being pool, teacher and
curate flags of `hnm mine` (`--variant mean="--margin-ref mean"`, `--variant plain="--relative-margin off"`)."""

from __future__ import annotations

import shlex
from typing import Any

from ..errors import SettingsError
from ..settings import SETTINGS

__all__ = ["parse_variant"]


def parse_variant(text: str, stages: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """(name, {setting: value as given}) of one `NAME=FLAGS`; values are checked later, with the base settings.
    A boolean setting takes `--flag` / `--no-flag`; `off` turns an optional one off."""
    name, sep, flags = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise SettingsError(f"--variant {text!r} is not NAME=FLAGS. Fix: e.g. --variant mean='--margin-ref mean'")
    specs = {s.flag: s for s in SETTINGS if s.stage in stages}
    try:
        tokens = shlex.split(flags)
    except ValueError as error:
        raise SettingsError(f"--variant {name}: {error}. Fix: close the quotes of its flags") from None
    out: dict[str, Any] = {}
    at = 0
    while at < len(tokens):
        flag, eq, value = tokens[at].partition("=")
        negated = flag.startswith("--no-") and "--" + flag[5:] in specs and specs["--" + flag[5:]].type is bool
        spec = specs["--" + flag[5:]] if negated else specs.get(flag)
        if spec is None:
            raise SettingsError(f"--variant {name}: {flag!r} is not a pool, teacher or curate flag. Fix: use flags "
                                f"of hnm mine such as {', '.join(list(specs)[:3])}")
        if spec.type is bool and not eq:
            out[spec.name] = not negated
            at += 1
            continue
        if not eq:
            if at + 1 >= len(tokens):
                raise SettingsError(f"--variant {name}: {flag} needs a value. Fix: give one after it")
            value, at = tokens[at + 1], at + 1
        out[spec.name] = None if spec.optional and value == "off" else value
        at += 1
    if not out:
        raise SettingsError(f"--variant {name} changes nothing. Fix: give it flags, e.g. {name}='--skip-n 3'")
    return name, out
