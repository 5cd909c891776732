"""Fine-tuning a sentence-transformers bi-encoder in place with the proof protocol's trainer arguments: the one trainer
that `hnm train` (hnm_core.prove.train) and a bi-encoder teacher's folds (hnm_core.teacher.folds) both call."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from ..progress import Progress
from .checkpoints import Checkpoints, report_steps, session
from .memory import reusing_heap

__all__ = ["Loss", "LOSSES", "Fitted", "fit"]


Loss = Literal["mnrl", "cached_mnrl", "margin_mse"]


LOSSES: dict[str, tuple[str, str]] = {
    "mnrl": ("ntuple", "MultipleNegativesRankingLoss"),
    "cached_mnrl": ("ntuple", "CachedMultipleNegativesRankingLoss"),
    "margin_mse": ("ntuple_scores", "MarginMSELoss"),
}


@dataclass(frozen=True)
class Fitted:
    """What a training did: its optimizer steps, the mean training loss over all of them, the step it resumed
    from (0: it started afresh) and the seconds that earlier runs of a resumed training spent reaching it."""

    steps: int
    training_loss: float
    resumed_from: int
    seconds_before: float


def fit(st_model: Any, table: pa.Table, loss: str, *, epochs: float, batch_size: int, lr: float,
        warmup_ratio: float, seed: int, bf16: bool, cpu: bool, progress: Progress, stage: str = "train",
        checkpoints: Checkpoints | None = None) -> Fitted:
    """Train `st_model` in place on `table` (the training columns of `LOSSES[loss]`) with SentenceTransformerTrainer
    and the protocol's arguments. Progress goes to `stage`. With `checkpoints` the training saves itself as it goes
    and resumes from its last checkpoint (models/checkpoints.py); the weights are the same either way."""
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses
    from transformers import PrinterCallback

    # The heap reused while training (no page faults for the activations it just freed), then handed back:
    # gigabytes a proof of many arms would keep (models/memory.py).
    with reusing_heap(), tempfile.TemporaryDirectory(prefix="hnm-train-") as scratch, \
            session(checkpoints, scratch, progress, stage) as run:
        args = SentenceTransformerTrainingArguments(
            output_dir=run.output_dir, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=lr,
            # transformers 5 reads a float warmup_steps below 1 as the ratio; the protocol's warmup_ratio=0.1 becomes
            # exactly this inside sentence-transformers.
            warmup_steps=warmup_ratio, seed=seed, save_strategy="no", report_to=[], batch_sampler="no_duplicates",
            logging_steps=1000, disable_tqdm=True, bf16=bf16, use_cpu=cpu,
        )
        trainer = SentenceTransformerTrainer(model=st_model, args=args, train_dataset=Dataset(InMemoryTable(table)),
                                             loss=getattr(losses, LOSSES[loss][1])(st_model),
                                             callbacks=[*run.callbacks, report_steps(progress, stage)])
        trainer.remove_callback(PrinterCallback)  # it prints the loss dicts; progress reports the steps instead
        output = trainer.train(resume_from_checkpoint=run.resume_from)
        del trainer
    st_model.eval()
    return Fitted(output.global_step, run.mean_loss(output.global_step, output.training_loss), run.resumed_step,
                  run.seconds_before)
