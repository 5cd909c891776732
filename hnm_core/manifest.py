"""Manifests and atomic writes: what every output folder records about how it was made, and how files land on disk.

One JSON rule for every manifest and report hnm writes (pool, export, audit): numpy values become plain numbers,
tuples and sets lists, paths strings, and NaN or infinity null (JSON has neither; a rate without a denominator is
"no value", not a number). Anything else is refused with an ExportError rather than written as its repr.

`atomic_path` / `atomic_write_bytes` put one file in place by renaming a finished temporary file onto it;
hnm_core.outdir does the same for whole folders.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError

__all__ = ["package_versions", "fingerprints", "to_json", "write_json", "atomic_path", "atomic_write_bytes"]

_VERSIONED = ("hnm", "sentence-transformers", "transformers", "torch", "faiss-cpu", "numpy", "pandas", "bm25s")


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes the output, for manifests."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def fingerprints(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model and teacher fingerprints recorded in a pool's `meta` (those it has)."""
    return {key: meta[key].get("fingerprint") for key in ("model", "teacher") if isinstance(meta.get(key), dict)}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(value: Mapping[str, Any]) -> bytes:
    """`value` as indented UTF-8 JSON under the module's one rule (NaN and infinity as null)."""
    try:
        return json.dumps(_plain(value), indent=2, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise ExportError(f"the manifest cannot be written as JSON ({err}). Fix: pass plain JSON values "
                          "(str, numbers, lists, dicts) in extra_manifest / pool.meta") from None


def write_json(path: str | Path, value: Mapping[str, Any]) -> None:
    """Write `to_json(value)` at `path`, atomically."""
    atomic_write_bytes(path, to_json(value))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on any error removed.

    Readers therefore see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` at `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
