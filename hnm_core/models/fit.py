"""Fine-tuning a sentence-transformers bi-encoder in place with the proof protocol's trainer arguments: the one trainer
that `hnm train` (hnm_core.prove.train) and a bi-encoder teacher's folds (hnm_core.teacher.folds) both call."""

from __future__ import annotations

import tempfile
from typing import Any, Literal

import pyarrow as pa

from ..progress import Progress
from .memory import reusing_heap

__all__ = ["Loss", "LOSSES", "fit"]


Loss = Literal["mnrl", "cached_mnrl", "margin_mse"]


LOSSES: dict[str, tuple[str, str]] = {
    "mnrl": ("ntuple", "MultipleNegativesRankingLoss"),
    "cached_mnrl": ("ntuple", "CachedMultipleNegativesRankingLoss"),
    "margin_mse": ("ntuple_scores", "MarginMSELoss"),
}


def fit(st_model: Any, table: pa.Table, loss: str, *, epochs: float, batch_size: int, lr: float,
        warmup_ratio: float, seed: int, bf16: bool, cpu: bool, progress: Progress, stage: str = "train") -> Any:
    """Train `st_model` in place on `table` (the training columns of `LOSSES[loss]`) with SentenceTransformerTrainer
    and the protocol's arguments; returns its TrainOutput. Progress goes to `stage`."""
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses
    from transformers import PrinterCallback, TrainerCallback

    class _Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress(stage, 0, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            progress(stage, state.global_step, state.max_steps)

    # The heap reused while training (no page faults for the activations it just freed), then handed back:
    # gigabytes a proof of many arms would keep (models/memory.py).
    with reusing_heap(), tempfile.TemporaryDirectory(prefix="hnm-train-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=lr,
            # transformers 5 reads a float warmup_steps below 1 as the ratio; the protocol's warmup_ratio=0.1 becomes
            # exactly this inside sentence-transformers.
            warmup_steps=warmup_ratio, seed=seed, save_strategy="no", report_to=[], batch_sampler="no_duplicates",
            logging_steps=1000, disable_tqdm=True, bf16=bf16, use_cpu=cpu,
        )
        trainer = SentenceTransformerTrainer(model=st_model, args=args, train_dataset=Dataset(InMemoryTable(table)),
                                             loss=getattr(losses, LOSSES[loss][1])(st_model), callbacks=[_Report()])
        trainer.remove_callback(PrinterCallback)  # it prints the loss dicts; progress reports the steps instead
        output = trainer.train()
        del trainer
    st_model.eval()
    return output
