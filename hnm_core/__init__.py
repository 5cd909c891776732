"""hnm: hard-negative mining for text-embedding training sets.

The stages, one package each: data -> retrieve (bm25, dense) -> pool -> teacher -> curate -> export, run together by
engines (local or Ray); audit measures the false-negative leak, prove trains and evaluates arms against each other;
models, outputs and the other ground-floor modules serve them all (docs/ARCHITECTURE.md). Heavy libraries (torch,
sentence-transformers, faiss, umap) are imported only by the functions that use them, so importing hnm_core is cheap.
"""

from .audit import AuditReport, audit, audit_pool, hide_positives
from .compat import HardNegatives, mine_hard_negatives
from .curate import LABELS, CurateParams, Curation, curate
from .data import Collection, load_collection
from .engines import MiningParams, mine
from .errors import DataError, ExportError, HnmError, ModelLoadError, SettingsError
from .export import ExportResult, export
from .models import LoadedModel, load_bi_encoder, load_cross_encoder
from .pool import Pool, PoolParams, PoolStats, build_pool, load_pool, save_pool
from .prove import EvalResult, RoundDiff, TrainResult, diff_rounds, evaluate, load_eval_collection, train_model
from .settings import SETTINGS, Setting, defaults, validate
from .teacher import TeacherParams, score_pool

__all__ = [
    "Collection",
    "load_collection",
    "Pool",
    "PoolParams",
    "PoolStats",
    "build_pool",
    "save_pool",
    "load_pool",
    "LoadedModel",
    "load_bi_encoder",
    "load_cross_encoder",
    "TeacherParams",
    "score_pool",
    "MiningParams",
    "mine",
    "mine_hard_negatives",
    "HardNegatives",
    "LABELS",
    "CurateParams",
    "Curation",
    "curate",
    "export",
    "ExportResult",
    "diff_rounds",
    "RoundDiff",
    "SETTINGS",
    "Setting",
    "defaults",
    "validate",
    "audit",
    "audit_pool",
    "hide_positives",
    "AuditReport",
    "HnmError",
    "DataError",
    "ModelLoadError",
    "SettingsError",
    "ExportError",
    "train_model",
    "TrainResult",
    "evaluate",
    "EvalResult",
    "load_eval_collection",
]
