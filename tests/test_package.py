"""The package as a user installs it: the wheel built from this checkout, installed into a fresh virtualenv outside
it, runs `hnm mine`, imports every module of hnm_core and serves `hnm studio` over HTTP. The new environment sees
this test environment's packages through a .pth file (nothing is downloaded) but not the checkout's sources: every
command runs from a folder outside it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a build must not pick up from the checkout: environments, caches and earlier build output.
_NOT_SOURCES = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                      ".hypothesis", "test-artifacts", ".hnm_cache", "out", "dist")


def _modules() -> list[str]:
    """Every module of hnm_core in the checkout, as import names."""
    return sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for path in (ROOT / "hnm_core").rglob("*.py"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_the_wheel_lists_every_package_of_hnm_core():
    """pyproject.toml names its packages one by one (the studio's are mapped onto the checkout's root), so a new
    subpackage must be added there: this says which."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "hnm_core").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(virtualenv, environment to run it with): the wheel of a copy of the checkout, installed without
    dependencies into a virtualenv whose site-packages points at this one's."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(dist), str(source)], check=True, cwd=tmp)
    wheels = list(dist.glob("hnm-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--quiet", str(wheels[0])], check=True, cwd=tmp)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HNM_CACHE_DIR=str(tmp / "cache"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return venv, env


@pytest.mark.slow
def test_the_installed_wheel_imports_every_module_from_its_own_files(installed, tmp_path):
    venv, env = installed
    script = ("import importlib, json, sys; from hnm_core.cli.studio import app_path; "
              "print(json.dumps({'files': {m: importlib.import_module(m).__file__ for m in sys.argv[1:]}, "
              "'app': str(app_path())}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script, *_modules()], check=True, cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    found = json.loads(out.stdout)
    assert "hnm_core.data" in found["files"]
    outside = {name: file for name, file in found["files"].items() if not file.startswith(str(venv))}
    assert not outside, outside
    assert found["app"].startswith(str(venv)) and found["app"].endswith("hnm_studio/app.py")


@pytest.mark.slow
def test_the_installed_hnm_mines_the_sample(installed, tmp_path):
    venv, env = installed
    out = tmp_path / "out"
    run = subprocess.run([str(venv / "bin" / "hnm"), "mine", str(ROOT / "sample_data"), "--out", str(out),
                          "--cache-dir", str(tmp_path / "cache"), "--quiet"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["n_selected"] > 0 and (out / "triplet.parquet").is_file() and (out / "pool").is_dir()


@pytest.mark.slow
def test_the_installed_hnm_studio_answers_http(installed, tmp_path):
    venv, env = installed
    port = _free_port()
    server = subprocess.Popen([str(venv / "bin" / "hnm"), "studio", str(ROOT / "sample_data"), "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        answers: dict[str, str] = {}
        while time.monotonic() < deadline and server.poll() is None and len(answers) < 2:
            for path in ("/_stcore/health", "/"):
                try:
                    with urllib.request.urlopen(f"http://localhost:{port}{path}", timeout=5) as response:
                        answers[path] = response.read().decode("utf-8", "replace")
                except OSError:
                    time.sleep(0.5)
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        assert answers.get("/_stcore/health") == "ok" and "<html" in answers.get("/", "").lower(), answers
    finally:
        server.terminate()
        server.wait(timeout=30)
