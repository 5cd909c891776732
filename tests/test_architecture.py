"""The house rules of docs/ARCHITECTURE.md, checked against the code: which packages each stage may import, that the
library never imports the studio, that every module is listed there with names that exist, and that no module
outgrows a screen of listing (400 lines)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "hnm_core"
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")

GROUND = {"errors", "settings", "wording", "schema", "progress", "storage", "manifest", "checked_files", "cache",
          "outputs"}
# What each stage package may import besides the ground floor (docs/ARCHITECTURE.md, "Packages").
MAY_IMPORT: dict[str, set[str]] = {
    "data": set(),
    "models": {"data"},
    "retrieve": {"models"},
    "pool": {"data", "models", "retrieve"},
    "teacher": {"data", "models", "retrieve", "pool"},
    "curate": {"data"},
    "export": {"data", "pool", "curate"},
    "engines": {"data", "models", "retrieve", "pool", "teacher", "curate"},
    "audit": {"data", "models", "retrieve", "pool", "teacher", "curate", "engines"},
    "prove": {"data", "models", "retrieve", "pool", "teacher", "curate", "export", "engines"},
}
STAGES = set(MAY_IMPORT)
FRONT_ENDS = {"compat", "cli"}


def modules() -> list[tuple[str, Path]]:
    """(dotted name, path) of every module of hnm_core."""
    found = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def imported(name: str, path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, as dotted names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            out |= {base} if node.module else {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return out


def unit(name: str) -> str:
    """The package or ground-floor module a dotted hnm_core name belongs to ("" for hnm_core itself)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("name,path", modules(), ids=[name for name, _ in modules()])
def test_each_module_imports_only_what_its_package_may(name, path):
    here = unit(name)
    for target in imported(name, path):
        assert not target.split(".")[0] in ("studio", "pages", "streamlit", "app"), f"{name} imports {target}"
        if not target.startswith("hnm_core.") or unit(target) == here:
            continue
        there = unit(target)
        assert there != "cli" or here == "", f"{name} imports the CLI ({target})"
        if here in GROUND:
            assert there in GROUND, f"the ground-floor module {name} imports the stage {target}"
        elif here in STAGES:
            assert there in GROUND | MAY_IMPORT[here], f"{name} imports {target}: {here}/ may not import {there}/"
        else:
            assert here in FRONT_ENDS or here == "", f"{name} is neither a stage, the ground floor nor a front end"


def module_rows() -> list[tuple[str, str]]:
    """(module path, entry points) of every row of the table "Modules and their entry points"."""
    section = ARCHITECTURE.split("## Modules and their entry points", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.match(r"\| `([\w/]+(?:\.py|/))` \| (.*) \|$", line)
        if match:
            rows.append((match[1], match[2]))
    return rows


def test_every_module_of_hnm_core_is_listed_with_its_entry_points():
    listed = {path for path, _ in module_rows()}
    missing = [str(p.relative_to(CORE)) for _, p in modules()
               if p.name not in ("__init__.py", "__main__.py") and str(p.relative_to(CORE)) not in listed]
    assert not missing, f"docs/ARCHITECTURE.md lists no row for {missing}"
    assert len(listed) == len(module_rows()), "a module is listed twice"


IDENTIFIER = re.compile(r"^\.?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?=\(|$)")


@pytest.mark.parametrize("path,entries", module_rows(), ids=[p for p, _ in module_rows()])
def test_every_name_the_table_gives_exists(path, entries):
    module = importlib.import_module("hnm_core." + path.removesuffix(".py").removesuffix("/").replace("/", "."))
    owner = module
    for token in re.findall(r"`([^`]+)`", entries):
        match = IDENTIFIER.match(token)
        if not match or "-" in token or " " in token.split("(")[0]:
            continue  # a file name, a flag, a command: not a Python name
        name = match[0]
        if name.startswith("."):  # a method of the class named before it: `BM25Index.build(...)`, `.search(...)`
            target, name = owner, name[1:]
        elif name.startswith("hnm_core."):  # a name of another module: `hnm_core.outputs.new_folder`
            module_name, _, name = name.rpartition(".")
            target = importlib.import_module(module_name)
        else:
            target = module
        for part in name.split("."):
            assert hasattr(target, part), f"docs/ARCHITECTURE.md names {token!r} in {path}: {part} is missing"
            target = getattr(target, part)
            if isinstance(target, type):
                owner = target


def test_the_stage_table_lists_every_setting_stage():
    from hnm_core.settings import SETTINGS

    stages = {spec.stage for spec in SETTINGS}
    table = ARCHITECTURE.split("## Settings and params", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    assert listed == stages


@pytest.mark.parametrize("folder", ["hnm_core", "studio", "pages"])
def test_no_module_outgrows_a_screen_of_listing(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"modules over 400 lines (split them by job): {long}"
