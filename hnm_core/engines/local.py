"""The whole mining run in one call, shared by `hnm mine`, the app's Mine page and the audit:
pool -> teacher, from one dict of settings (settings.py) or the params objects built from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..data import Collection
from ..errors import SettingsError
from ..models.loading import LoadedModel
from ..pool import Pool, PoolParams, build_pool
from ..progress import Progress, no_progress
from ..settings import pick, setting
from ..teacher.scoring import TeacherParams, load_teacher, score_pool

__all__ = ["MiningParams", "mine"]


@dataclass(frozen=True)
class MiningParams:
    """What mining reads: the pool's params and the teacher's, built once from one dict of settings."""

    pool: PoolParams
    teacher: TeacherParams
    engine: Literal["local", "ray"]  # where it runs (engines/ray_engine.py for ray); the pool is the same on either

    def __post_init__(self) -> None:
        if self.teacher.kind == "ensemble":  # before any retrieval: a member the pool will not have
            missing = [m for m in self.teacher.teacher_members if m != "cross-encoder" and m not in self.pool.sources]
            if missing:
                raise SettingsError(f"teacher_members: {', '.join(missing)} scores come from the pool's sources, "
                                    f"which are {', '.join(self.pool.sources)}. Fix: add {', '.join(missing)} to "
                                    "--sources, or leave it out of --teacher-members")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> MiningParams:
        """From settings by name (the table's defaults for the rest; other stages' settings are ignored)."""
        engine = setting("engine").check(pick(values, ("engine",))["engine"])
        return cls(PoolParams.from_settings(values), TeacherParams.from_settings(values), engine)

    def settings(self) -> dict[str, Any]:
        """The pool, teacher and seed settings by name: what identifies a mined pool."""
        return {**self.pool.settings(), **self.teacher.settings()}


def mine(
    collection: Collection,
    params: MiningParams | Mapping[str, Any] | None = None,
    *,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    teacher: LoadedModel | None = None,
    doc_embeddings: str | Path | None = None,
    query_embeddings: str | Path | None = None,
    progress: Progress = no_progress,
) -> Pool:
    """Build the candidate pool and score it with the teacher. `params` are MiningParams, or settings by name
    (defaults for the rest); `encoder` / `teacher` pass models already in memory; `doc_embeddings` /
    `query_embeddings` name embeddings files used instead of encoding (see build_pool). Everything expensive is
    cached under `cache_dir`."""
    if not isinstance(params, MiningParams):
        params = MiningParams.from_settings(params or {})
    # The teacher is loaded (lazily where it can be) before retrieval, so a model that cannot serve, such as a
    # bi-encoder given as a cross-encoder, is refused in a second, not after the corpus is encoded.
    teacher = teacher or load_teacher(params.teacher)
    if params.engine == "ray":  # its actors load their own models: `encoder` and `teacher` stay in this process
        from .ray_engine import mine as mine_on_ray

        return mine_on_ray(collection, params, cache_dir=cache_dir, doc_embeddings=doc_embeddings,
                           query_embeddings=query_embeddings, progress=progress)
    pool = build_pool(collection, params.pool, cache_dir=cache_dir, encoder=encoder, doc_embeddings=doc_embeddings,
                      query_embeddings=query_embeddings, progress=progress)
    return score_pool(pool, params.teacher, cache_dir=cache_dir, model=teacher, progress=progress)
