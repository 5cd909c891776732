"""Stage 4, teacher: rescore the pool with a stronger or different model (scoring, pair_scores), the models it
loads and what their files say before any weights load (models, model_files), and a teacher trained from the
collection's own labels, cross-fitted (training).

May import: the ground floor, data, retrieve, pool, and export's manifest and output folders (a trained teacher is an
output folder). Never labels a row: that is curate's job.
"""

from __future__ import annotations

from .scoring import MEMBER_SCORE_COLUMN, ScoringCost, TeacherParams, score_pool, scoring_cost
from .training import TeacherTrainResult, train_teacher

__all__ = ["TeacherParams", "score_pool", "ScoringCost", "scoring_cost", "MEMBER_SCORE_COLUMN", "train_teacher", "TeacherTrainResult"]
