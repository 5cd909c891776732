"""The whole mining run in one call, shared by `hnm mine`, the app's Mine page and the audit:
pool -> teacher, from one dict of settings (settings.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import Collection
from .models import LoadedModel
from .pool import Pool, build_pool
from .progress import Progress, no_progress
from .settings import defaults, validate
from .teacher import load_teacher, score_pool

__all__ = ["mine", "pool_kwargs", "teacher_kwargs"]


def pool_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """The build_pool keywords among `values` (validated settings)."""
    return {name: values[name] for name in defaults("pool")}


def teacher_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """The score_pool keywords among `values`. The teacher runs in the miner's precision and batch size; a
    bi-encoder teacher also uses the miner's max length, so the miner used as its own teacher costs nothing, while a
    cross-encoder keeps its own (usually 512)."""
    return {**{name: values[name] for name in defaults("teacher")}, "precision": values["precision"],
            "batch_size": values["batch_size"],
            "max_length": values["max_seq_length"] if values["teacher"] == "bi-encoder" else None}


def mine(
    collection: Collection,
    values: dict[str, Any] | None = None,
    *,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    teacher: LoadedModel | None = None,
    progress: Progress = no_progress,
) -> Pool:
    """Build the candidate pool and score it with the teacher. `values` are settings by name (defaults for the
    rest); `encoder` / `teacher` pass models already in memory. Everything expensive is cached under `cache_dir`."""
    values = validate(values or {})
    teach = teacher_kwargs(values)
    # The teacher is loaded (lazily where it can be) before retrieval, so a model that cannot serve, such as a
    # bi-encoder given as a cross-encoder, is refused in a second, not after the corpus is encoded.
    teacher = teacher or load_teacher(teach["teacher"], teach["teacher_model"], precision=teach["precision"],
                                      max_length=teach["max_length"])
    pool = build_pool(collection, **pool_kwargs(values), cache_dir=cache_dir, encoder=encoder, progress=progress)
    return score_pool(pool, **teach, cache_dir=cache_dir, model=teacher, progress=progress)
