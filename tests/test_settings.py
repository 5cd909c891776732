import pytest

from hnm_core.cli import build_parser
from hnm_core.errors import SettingsError
from hnm_core.settings import SETTINGS, defaults, setting, validate


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented_and_its_default_valid(spec):
    assert spec.help and spec.help[0].isupper() and spec.help.endswith((".", ")"))
    assert spec.check(spec.default) == spec.default
    if spec.choices and not spec.multiple:
        assert spec.default in spec.choices


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {opt for action in sub._actions for opt in action.option_strings}


def test_mine_offers_every_setting_as_a_flag():
    flags = _flags("mine")
    assert {s.flag for s in SETTINGS} <= flags


def test_curate_offers_every_curate_and_export_setting():
    flags = _flags("curate")
    assert {s.flag for s in SETTINGS if s.stage in ("curate", "export")} <= flags
    assert not {s.flag for s in SETTINGS if s.stage == "pool" and s.name != "seed"} & flags


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("top_k", "50", 50),
        ("stopwords", "yes", True),
        ("stopwords", "off", False),
        ("sources", "dense", ("dense",)),
        ("sources", "bm25, dense", ("bm25", "dense")),
        ("relative_margin", None, None),
        ("ceiling", "0.8", 0.8),
    ],
)
def test_values_are_converted(name, value, expected):
    assert setting(name).check(value) == expected


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("top_k", "0", "below the minimum 1"),
        ("top_k", "many", "is not a int"),
        ("sources", "splade", "'splade' is not one of bm25, dense"),
        ("precision", "fp8", "not one of auto, fp32, bf16"),
        ("negatives", None, "needs a value"),
        ("near_dup", 1.5, "above the maximum 1.0"),
    ],
)
def test_bad_values_say_what_is_accepted(name, value, message):
    with pytest.raises(SettingsError, match=message):
        setting(name).check(value)


def test_validate_fills_defaults_and_rejects_unknown_names():
    assert validate({"top_k": 7})["top_k"] == 7
    assert validate({})["negatives"] == defaults()["negatives"]
    with pytest.raises(SettingsError, match="unknown setting 'topk'"):
        validate({"topk": 7})
