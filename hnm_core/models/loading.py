"""Loading encoders (bi-encoders, cross-encoders and cross-fitted teachers) and fingerprinting them.

A model is identified by a fingerprint of its weights and configuration, never by its name: two checkpoints saved in
folders with the same name must not share cached embeddings or scores. What can be told from a model's files
without loading it (where a name resolves to, whether a cross-encoder has a trained head, a cross-fitted teacher's
folds) is in hnm_core.models.files; its public names are re-exported here.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelLoadError, SettingsError
from ..manifest import folder_fingerprint, model_fingerprint, weights_fingerprint
from ..settings import DEFAULT_MODEL, setting
from .files import (
    CROSS_FIT_MANIFEST,
    OFFLINE_FIX,
    check_cross_encoder,
    check_max_length,
    cross_fit_folds,
    cross_fit_kind,
    has_head,
    headless_error,
    hub_offline,
    hub_unreachable,
    in_local_cache,
    pair_key,
    query_key,
    read_json,
    refuse_headless,
    refuse_other_kind,
    resolve_model_path,
)

__all__ = [
    "Precision",
    "LoadedModel",
    "CrossFitTeacher",
    "CROSS_FIT_MANIFEST",
    "query_key",
    "pair_key",
    "resolve_model_path",
    "check_cross_encoder",
    "resolve_precision",
    "cpu_has_bf16",
    "load_bi_encoder",
    "load_cross_encoder",
]

Precision = Literal["fp32", "bf16"]


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
        check_max_length(name, max_length, path=path)  # before any weights load, as the head check
        if kind == "cross-encoder":  # before any weights load (a hub model loads below to be fingerprinted)
            refuse_headless(name, path)
        if Path(path).is_dir():
            content = folder_fingerprint(Path(path))
        else:  # a hub name: only the loaded weights say which revision this is
            content = weights_fingerprint(self.model.model if kind == "cross-encoder" else self.model)
        self.fingerprint = model_fingerprint(kind, content, precision, max_length)

    @classmethod
    def from_instance(cls, kind: Literal["bi-encoder", "cross-encoder"], model: Any) -> LoadedModel:
        """A SentenceTransformer or CrossEncoder a caller already holds, used as it is (its device, dtype and max
        length). It is fingerprinted by its loaded weights, which may differ from any folder's (a model fine-tuned
        in memory). A CrossEncoder answers raw logits whatever its activation, as a loaded teacher does."""
        import torch

        module = model.model if kind == "cross-encoder" else model
        dtype = next(module.parameters()).dtype
        if dtype not in (torch.float32, torch.bfloat16):
            raise SettingsError(f"the {kind} holds {dtype} weights; hnm encodes and scores in fp32 or bf16. Fix: "
                                "pass model.float() or model.bfloat16()")
        config = getattr(module, "config", None) if kind == "cross-encoder" else getattr(
            getattr(module[0], "auto_model", None), "config", None)
        source = str(getattr(config, "_name_or_path", "") or "")
        ref = cls.__new__(cls)
        ref.kind, ref.name, ref.path = kind, source or type(model).__name__, source if Path(source).is_dir() else ""
        ref.precision = "bf16" if dtype == torch.bfloat16 else "fp32"
        ref.max_length = model.max_seq_length
        ref.device = str(model.device)
        ref._model = _Logits(model) if kind == "cross-encoder" else model
        ref.fingerprint = model_fingerprint(kind, weights_fingerprint(module), ref.precision, ref.max_length)
        return ref

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


class _Logits:
    """A caller's CrossEncoder whose `predict` answers raw logits (the teacher stage applies the sigmoid itself),
    without changing the caller's object."""

    def __init__(self, cross_encoder: Any) -> None:
        self.cross_encoder = cross_encoder

    def predict(self, pairs: Any, **kwargs: Any) -> Any:
        import torch

        return self.cross_encoder.predict(pairs, activation_fn=torch.nn.Identity(), **kwargs)


class CrossFitTeacher(LoadedModel):
    """A cross-fitted teacher (a folder written by `hnm train-teacher`): one model per fold of the queries, fold i's
    trained on every query but fold i's; cross-encoders or bi-encoders (`kind`, from its teacher.json). `folds` are
    the members (each with its own fingerprint, so scores and embeddings are cached per member); `route` says which
    member scores a query; `model` loads them all."""

    def __init__(self, kind: Literal["bi-encoder", "cross-encoder"], name: str, path: str, precision: Precision,
                 max_length: int | None, device: str) -> None:
        folders = cross_fit_folds(path) or []
        manifest = read_json(Path(path) / CROSS_FIT_MANIFEST)
        self.folds = tuple(LoadedModel(kind, f"{name} fold {i}", str(folder), precision, max_length, device)
                           for i, folder in enumerate(folders))
        self._fold_of = {key: i for i, fold in enumerate(manifest["folds"]) for key in fold.get("query_keys", ())}
        super().__init__(kind, name, path, precision, max_length, device)

    def route(self, query_texts: Any) -> Any:
        """Per query text, the index of the fold that holds it (its member never trained on it), -1 for a query no
        fold holds (scored by the mean of every member's score)."""
        import numpy as np

        return np.array([self._fold_of.get(query_key(text), -1) for text in query_texts], dtype=np.int64)

    @property
    def model(self) -> Any:
        """Every member's CrossEncoder, in fold order."""
        return tuple(fold.model for fold in self.folds)

    @property
    def loaded(self) -> bool:
        return all(fold.loaded for fold in self.folds)


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


def default_device() -> str:
    """cuda when a GPU is usable, else cpu. Without NVIDIA device files torch is not imported at all, so a run whose
    results are all cached starts in a fraction of a second."""
    if not Path("/dev/nvidia0").exists() and not Path("/proc/driver/nvidia").exists():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_error(kind: str, name: str, error: BaseException) -> ModelLoadError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelLoadError(f"could not load {kind} {name!r}: {reason[:300].rstrip('.')}. Fix: {OFFLINE_FIX}")


def _local_only(kind: str, name: str, path: str) -> bool:
    """Whether to load without asking the hub: always for folders and under HF_HUB_OFFLINE; for a hub name that is
    not in the local cache, fail at once when the hub cannot be reached (its client would retry for about a minute)."""
    if Path(path).is_dir() or hub_offline():
        return True
    if in_local_cache(path):
        return False
    if problem := hub_unreachable():
        raise ModelLoadError(f"could not load {kind} {name!r}: it is not in the local Hugging Face cache and "
                             f"{problem}. Fix: {OFFLINE_FIX}")
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
    head = sorted(key for key in missing.keys if has_head({key}))
    if head:  # what the file check could not see (a .bin checkpoint, a hub model): the head was made up on load
        raise headless_error(ref.name, f"transformers initialised its {', '.join(head)} at random on loading")
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
    as_teacher: bool = False,
) -> LoadedModel:
    """A sentence-transformers bi-encoder by name or folder, in the given precision. Weights load on first use
    (`eager=True` loads now, so a bad model fails here with ModelLoadError and its fix). `as_teacher`: the model will
    score a pool, so a cross-fitted bi-encoder teacher folder (hnm train-teacher) loads as a CrossFitTeacher; for any
    other use (mining, training, evaluating) such a folder is refused, as it holds one model per fold."""
    return _reference("bi-encoder", name, precision, max_seq_length, device, eager, as_teacher=as_teacher)


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
    return _reference("cross-encoder", name, precision, max_length, device, eager, as_teacher=True)


def _reference(kind: Literal["bi-encoder", "cross-encoder"], name: str, precision: str, max_length: int | None,
               device: str | None, eager: bool, *, as_teacher: bool) -> LoadedModel:
    device = device or default_device()
    path = resolve_model_path(name)
    resolved = resolve_precision(precision, device)
    refuse_other_kind(name, path, kind)
    fold_kind = cross_fit_kind(path)
    if fold_kind == "bi-encoder" and not as_teacher:
        raise ModelLoadError(f"{name} is a cross-fitted teacher (one bi-encoder per fold of the queries), which "
                             "only scores candidates. Fix: pass it as --teacher-model with --teacher bi-encoder, or "
                             f"one of its fold folders ({Path(name) / 'fold-0'}) as a single model")
    if fold_kind is not None:
        ref: LoadedModel = CrossFitTeacher(kind, name, path, resolved, max_length, device)
    else:
        ref = LoadedModel(kind, name, path, resolved, max_length, device)
    if eager:
        ref.model  # noqa: B018 - loading is the point
    return ref


