"""The files of a studio session: its scratch folder (uploads, exports to download), where the Train page keeps a
collection's proof, and a folder zipped for download."""

from __future__ import annotations

import io
import shutil
import tempfile
import weakref
import zipfile
from pathlib import Path

import streamlit as st

__all__ = ["session_dir", "proof_dir", "zip_folder"]


class _SessionDir:
    """A temporary folder that is deleted when this object is garbage collected (the session's state is dropped
    when the session ends) or when the server exits."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="hnm-studio-"))
        weakref.finalize(self, shutil.rmtree, str(self.path), True)


def session_dir() -> Path:
    """This session's private scratch folder (uploads, downloads)."""
    if "workdir" not in st.session_state:
        st.session_state["workdir"] = _SessionDir()
    return st.session_state["workdir"].path


def proof_dir(data_key: str) -> Path:
    """Where the Train page keeps the proof of a collection: under the hnm cache, so its trained arms outlive the
    session and a later proof on the same collection reuses them (arms are keyed by what they trained on)."""
    from hnm_core.cache import default_cache_dir

    return default_cache_dir() / "proofs" / data_key[:16]


def zip_folder(folder: Path) -> bytes:
    """The files of `folder` (not hidden ones) as a zip archive in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
