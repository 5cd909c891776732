"""Models: loading encoders (bi-encoders, cross-encoders, cross-fitted teachers) and fingerprinting them (loading),
and what a model's files say before any weights load: the folder a name resolves to, whether a cross-encoder has a
trained head, its positions, its cross-fitting folds (files).

May import: the ground floor (errors, settings, export's manifest for fingerprints). Every stage that runs a model
imports it; it imports no stage.
"""

from __future__ import annotations

from .files import check_cross_encoder, resolve_model_path
from .loading import CrossFitTeacher, LoadedModel, load_bi_encoder, load_cross_encoder

__all__ = ["LoadedModel", "CrossFitTeacher", "load_bi_encoder", "load_cross_encoder", "resolve_model_path",
           "check_cross_encoder"]
