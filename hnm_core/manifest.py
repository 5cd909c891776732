"""Manifests and atomic writes: what every output folder records about how it was made, and how files land on disk.

Fingerprints: `model_fingerprint` identifies what a model computes (its weights, read from its folder or from the
loaded tensors, with its precision and max length); `fingerprints(meta)` collects those a pool recorded.

One JSON rule for every manifest and report hnm writes (pool, export, audit): numpy values become plain numbers,
tuples and sets lists, paths strings, and NaN or infinity null (JSON has neither; a rate without a denominator is
"no value", not a number). Anything else is refused with an ExportError rather than written as its repr.

`atomic_path` / `atomic_write_bytes` put one file in place by renaming a finished temporary file onto it;
hnm_core.outputs.folder does the same for whole folders.
"""

from __future__ import annotations

import hashlib
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
from .storage import disk_full, is_disk_full, written_under

__all__ = ["package_versions", "digest", "fingerprints", "model_fingerprint", "folder_fingerprint", "weights_fingerprint",
           "to_json", "write_json", "atomic_path", "atomic_write_bytes", "comparable_files"]

_VERSIONED = ("hnm", "sentence-transformers", "transformers", "torch", "faiss-cpu", "numpy", "pandas", "bm25s")


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of the packages whose behaviour shapes the output (and of `extra` ones), for manifests."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (*_VERSIONED, *extra):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def fingerprints(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model and teacher fingerprints recorded in a pool's `meta` (those it has)."""
    return {key: meta[key].get("fingerprint") for key in ("model", "teacher") if isinstance(meta.get(key), dict)}


def model_fingerprint(kind: str, content: str, precision: str, max_length: int | None) -> str:
    """A model's fingerprint: its weights' (`content`, from folder_fingerprint or weights_fingerprint) with the kind,
    precision and max length, which change its outputs too. Caches and manifests key on it."""
    value = {"kind": kind, "content": content, "precision": precision, "max_length": max_length}
    return digest(value)


def digest(value: Any, *, size: int = 16) -> str:
    """blake2b of `value` as canonical JSON: what a model fingerprint, a training run or a teacher plan is keyed by."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True, default=str).encode(), digest_size=size).hexdigest()


def file_digest(path: str | Path) -> str:
    """The blake2b-128 hex digest of a file's bytes: what identifies a training file (the proof loop keys arms by
    it) and each file of a training checkpoint."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# Files that do not change what a model computes; trainer leftovers are skipped so a checkpoint folder and its
# exported copy share caches, and hnm train's manifest.json (it holds the run's time) so two identical runs do too
# (hidden files, such as the output marker, are skipped below).
_IGNORED_FILES = {"README.md", "optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin",
                  "manifest.json"}


_fingerprint_memo: dict[tuple, str] = {}


def folder_fingerprint(folder: Path) -> str:
    """blake2b over the relative path and bytes of every file that defines the model (weights, configs,
    tokenizer, module subfolders such as 1_Pooling). Memoised per (path, sizes, mtimes) within the process."""
    files = sorted(
        f for f in folder.rglob("*")
        if f.is_file() and f.name not in _IGNORED_FILES and not f.name.startswith((".", "rng_state"))
        and not any(part.startswith(("checkpoint-", ".", "runs")) for part in f.relative_to(folder).parts[:-1])
    )
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp in _fingerprint_memo:
        return _fingerprint_memo[stamp]
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        h.update(str(f.relative_to(folder)).encode() + b"\x00")
        with open(f, "rb") as stream:
            while chunk := stream.read(1 << 22):
                h.update(chunk)
    _fingerprint_memo[stamp] = h.hexdigest()
    return _fingerprint_memo[stamp]


def weights_fingerprint(module: Any) -> str:
    """blake2b over every parameter and buffer (name, dtype, shape, bytes) and the module configurations."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    configs = [getattr(m, "get_config_dict", dict)() for m in module] if hasattr(module, "__iter__") else []
    inner = getattr(module, "config", None)
    h.update(json.dumps({"modules": configs, "config": inner.to_dict() if inner is not None else None},
                        sort_keys=True, default=str).encode())
    for key, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


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

    Readers therefore see either the old file or the complete new one, never a partial write. A full disk raises
    DiskFullError naming the folder, once the partial file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        written = written_under(Path(tmp))
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and is_disk_full(error):
            raise disk_full(path.parent, written=written, kept=f"the partly written {path.name} was removed, "
                                                                    "and an earlier one is as it was") from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` at `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def comparable_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, each manifest.json without what two runs of one command differ in
    by design (its time, the command line, the cache folder): what docs/reliability.md promises is the same bytes."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            for key in ("created_utc", "command"):
                manifest.pop(key, None)
            manifest.get("pool", manifest).get("embeddings", {}).pop("cache_dir", None)
            data = json.dumps(manifest, sort_keys=True).encode()
        out[str(path.relative_to(folder))] = data
    return out
