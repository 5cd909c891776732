"""`hnm studio [DATA] [--port N]`: start the studio (app.py, pages/, studio/) with `streamlit run`.

An installed hnm ships the studio's files as the `hnm_studio` package (with its .streamlit/config.toml, which
Streamlit reads beside the script, and the bundled sample); a checkout runs its own app.py, as `make app` does.
DATA reaches the studio through the environment (`DATA_ENV`, `SPLIT_ENV`): the first run of each browser session
loads it, and the Data page shows its path (studio/persist.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ..data.hf import looks_like_hub_id
from ..errors import DataError, SettingsError

__all__ = ["DATA_ENV", "SPLIT_ENV", "app_path", "studio_command", "run_studio"]

DATA_ENV = "HNM_STUDIO_DATA"
"""The collection (path or hub id) every new browser session of the studio starts with."""
SPLIT_ENV = "HNM_STUDIO_SPLIT"
"""The split it is read with (a BEIR qrels split, or a DatasetDict's)."""


def app_path() -> Path:
    """The studio's app.py: the installed `hnm_studio` package's, else the checkout's beside hnm_core."""
    spec = importlib.util.find_spec("hnm_studio")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    folders.append(str(Path(__file__).resolve().parents[2]))  # the checkout: hnm_core/cli/studio.py
    for folder in folders:
        app = Path(folder) / "app.py"
        if app.is_file() and (Path(folder) / "studio").is_dir():
            return app
    raise SettingsError("the studio's files are not installed (no hnm_studio package and no checkout around "
                        "hnm_core). Fix: pip install the hnm wheel or checkout again (pip install .)")


def studio_command(port: int | None = None) -> list[str]:
    """The `streamlit run` command line that serves the studio (on `port`, else Streamlit's 8501)."""
    command = [sys.executable, "-m", "streamlit", "run", str(app_path())]
    if port is not None:
        command += ["--server.port", str(port)]
    return command


def run_studio(data: str | None = None, *, port: int | None = None, split: str | None = None) -> None:
    """Replace this process with the studio's Streamlit server (so a signal to it stops the server), with `data`
    preloaded in every new session (`data`: a path on this machine, or a hub id)."""
    if importlib.util.find_spec("streamlit") is None:
        raise SettingsError("the studio needs streamlit. Fix: pip install 'hnm[app]'")
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError(f"--port {port} is not a TCP port. Fix: give a number from 1 to 65535")
    env = dict(os.environ)
    if data:
        target = Path(data).expanduser()
        if not target.exists() and not looks_like_hub_id(data):
            raise DataError(target, "does not exist.", fix="check the path, or give a hub id org/name")
        env[DATA_ENV] = str(target.resolve()) if target.exists() else data
        if split:
            env[SPLIT_ENV] = split
    command = studio_command(port)
    os.execve(command[0], command, env)
