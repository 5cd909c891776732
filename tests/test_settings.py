import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from hnm_core.audit import audit
from hnm_core.cli import build_parser
from hnm_core.curate.rules import CurateParams
from hnm_core.errors import SettingsError
from hnm_core.engines.local import MiningParams, mine
from hnm_core.pool import PoolParams, build_pool
from hnm_core.settings import SETTINGS, StageParams, defaults, setting, validate
from hnm_core.teacher.scoring import TeacherParams, score_pool

ROOT = Path(__file__).resolve().parents[1]


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


MINING = ("data", "run", "pool", "teacher", "curate")  # the other stages are the knobs of train, eval and prove


def test_mine_offers_every_setting_as_a_flag():
    flags = _flags("mine")
    assert {s.flag for s in SETTINGS if s.stage in (*MINING, "export")} <= flags


def test_audit_offers_every_setting_but_the_export_ones():
    flags = _flags("audit")
    assert {s.flag for s in SETTINGS if s.stage in (*MINING, "audit")} <= flags
    assert not {s.flag for s in SETTINGS if s.stage == "export"} & flags


@pytest.mark.parametrize("command, stages, others", [
    ("train", ("run", "train"), ()),
    ("train-teacher", ("data", "run", "pool", "teacher_train"), ("--checkpoint-minutes",)),
    ("eval", ("data", "eval"), ("--batch-size",)),
    ("prove", ("run", "pool", "teacher", "curate", "train", "eval", "prove"), ()),
])
def test_train_eval_and_prove_take_their_flags_from_the_table(command, stages, others):
    flags = _flags(command)
    assert {s.flag for s in SETTINGS if s.stage in stages} | set(others) <= flags


@pytest.mark.parametrize("command", ["pool", "mine", "curate", "audit"])
def test_every_command_with_settings_takes_the_seed_and_prints_its_help(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    assert "--seed" in sub.format_help()  # argparse %-formats help: a bare % from the table would raise here


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


# ---------------------------------------------------------------------------------------------------------------------
# Each setting's default lives in the table alone; the params objects are built from it once


PARAMS = [
    (PoolParams, {*defaults("pool"), "seed"}),
    (TeacherParams, {*defaults("teacher"), "precision", "batch_size"}),
    (CurateParams, {*defaults("curate"), "seed"}),
]


@pytest.mark.parametrize("cls, names", PARAMS, ids=lambda x: getattr(x, "__name__", ""))
def test_params_hold_their_stage_and_take_defaults_only_from_the_table(cls, names):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert {name for name in fields if name in {s.name for s in SETTINGS}} == names
    for name in names:
        if issubclass(cls, StageParams):  # no defaults of their own: `from_settings` fills the table's
            assert fields[name].default is dataclasses.MISSING, name
        else:
            assert fields[name].default == setting(name).default, name
    assert cls.from_settings({}) == cls.from_settings(validate({}))


def _literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Tuple):
        return all(_literal(item) for item in node.elts)
    return isinstance(node, ast.Constant) and node.value is not None  # None is "off" / "the model's own", no default


def test_no_signature_types_a_setting_default_again():
    """A keyword named like a setting takes its default from the table (`setting(name).default`), never a literal
    that could drift from it; None ("off", "the model's own") is not a default of the table's."""
    names = {s.name for s in SETTINGS}
    found = []
    for path in sorted(p for folder in ("hnm_core", "studio", "pages") for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                     *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)]
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg}={ast.unparse(default)})"
                      for arg, default in pairs if arg.arg in names and _literal(default)]
    assert not found


@pytest.mark.parametrize("stage", [build_pool, score_pool, mine, audit])
def test_stages_take_params_not_setting_keywords(stage):
    parameters = inspect.signature(stage).parameters
    named_like_settings = {name: p for name, p in parameters.items() if name in {s.name for s in SETTINGS}}
    # score_pool's `model` is a teacher already in memory, not the `model` setting
    assert all("LoadedModel" in str(p.annotation) for p in named_like_settings.values()), named_like_settings


def test_params_are_checked_once_when_built():
    assert PoolParams.from_settings({"top_k": "7", "sources": "bm25"}).top_k == 7
    with pytest.raises(SettingsError, match="top_k: 0 is below the minimum 1"):
        PoolParams.from_settings({"top_k": 0})
    with pytest.raises(SettingsError, match="unknown setting 'topk'"):
        PoolParams.from_settings({"topk": 7})
    params = PoolParams.from_settings({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.top_k = 3  # type: ignore[misc]


@pytest.mark.parametrize("kind, max_length", [("bi-encoder", 64), ("cross-encoder", None)])
def test_a_bi_encoder_teacher_shares_the_miners_max_length(kind, max_length):
    params = TeacherParams.from_settings({"teacher": kind, "max_seq_length": 64, "batch_size": 8})
    assert (params.max_length, params.batch_size) == (max_length, 8)
    assert set(params.settings()) == set(defaults("teacher"))
    mining = MiningParams.from_settings({"teacher": kind, "seed": 3})
    assert mining.pool.seed == 3 and set(mining.settings()) == {s.name for s in SETTINGS
                                                                 if s.stage in ("run", "pool", "teacher")}


@pytest.mark.parametrize("command", ["mine", "curate"])
def test_mine_and_curate_choose_their_engine_from_the_table(command):
    assert "--engine" in _flags(command)
    assert validate({"engine": "ray"})["engine"] == "ray"
    with pytest.raises(SettingsError, match="engine"):
        validate({"engine": "spark"})
