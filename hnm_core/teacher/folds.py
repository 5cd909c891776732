"""Training one fold of a cross-fitted teacher (hnm_core.teacher.training): a CrossEncoder with
BinaryCrossEntropyLoss, or the bi-encoder fine-tuned with MultipleNegativesRankingLoss on n-tuples; each fold saved
with what it trained on (hnm_fold.json) into a folder that appears whole (export.outdir.new_folder), so a killed run
leaves only finished folds."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..models.checkpoints import Checkpoints, report_steps, session
from ..models.loading import load_bi_encoder
from ..outputs.folder import new_folder
from ..progress import Progress

__all__ = ["FOLD_INFO", "read_info", "ntuples", "train_bi_encoder_fold", "train_cross_encoder_fold"]


FOLD_INFO = "hnm_fold.json"


def read_info(folder: Path) -> dict[str, Any] | None:
    """What a finished fold trained on, or None when the fold is not finished (folds appear only when complete)."""
    try:
        return json.loads((folder / FOLD_INFO).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Raise `loggers` to ERROR for the duration (the expected load report of a new head is not news to the user)."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def ntuples(rows: Sequence[tuple[str, str, float]], negatives: int) -> tuple[dict[str, list[str]], int]:
    """A bi-encoder fold's MNRL training columns from `training_rows`' rows: per labelled positive, (query, positive,
    negative_1..n) with n = `negatives`, the query's drawn negatives dealt to its positives in turn (a query drawn
    fewer than n per positive repeats them). Also the count of positives left out because their query has no
    negative beyond the band. When no query has one (a pool no deeper than the band), every positive is kept as an
    (anchor, positive) pair: the other rows of a batch are then its only negatives."""
    by_query: dict[str, tuple[list[str], list[str]]] = {}
    for query, doc, label in rows:
        by_query.setdefault(query, ([], []))[0 if label > 0 else 1].append(doc)
    if not any(drawn for _, drawn in by_query.values()):
        pairs = [(query, positive) for query, (positives, _) in by_query.items() for positive in positives]
        return {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}, 0
    columns: dict[str, list[str]] = {"anchor": [], "positive": [],
                                     **{f"negative_{j + 1}": [] for j in range(negatives)}}
    untaught = 0
    for query, (positives, drawn) in by_query.items():
        if not drawn:
            untaught += len(positives)
            continue
        for i, positive in enumerate(positives):
            columns["anchor"].append(query)
            columns["positive"].append(positive)
            for j in range(negatives):
                columns[f"negative_{j + 1}"].append(drawn[(i * negatives + j) % len(drawn)])
    return columns, untaught


def train_bi_encoder_fold(rows: list[tuple[str, str, float]], base_path: str, folder: Path, *, negatives: int,
                           epochs: float, batch_size: int, lr: float, max_length: int, bf16: bool, seed: int,
                           info: dict[str, Any], progress: Progress, stage: str,
                           checkpoints: Checkpoints | None = None) -> None:
    """Fine-tune one fold's bi-encoder on `rows` (MultipleNegativesRankingLoss on n-tuples, train.fit with the proof
    recipe's sampler and warm-up) and save it as `folder`, atomically (`_saving_fold`); with `checkpoints` a stopped
    fold resumes where it was (models/checkpoints.py)."""
    import pyarrow as pa

    from ..models.fit import fit

    started = time.perf_counter()
    columns, untaught = ntuples(rows, negatives)
    ref = load_bi_encoder(base_path, precision="fp32", max_seq_length=max_length)
    with _saving_fold(folder, {**info, "untaught_positives": untaught}, started) as work:
        fit(ref.model, pa.table(columns), "mnrl", epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=0.1,
            seed=seed, bf16=bf16, cpu=ref.device == "cpu", progress=progress, stage=stage, checkpoints=checkpoints)
        ref.model.save(str(work), create_model_card=False)


@contextmanager
def _saving_fold(folder: Path, info: dict[str, Any], started: float) -> Iterator[Path]:
    """The body saves one fold's model into the yielded folder; when it returns, hnm_fold.json (`info` plus the
    seconds since `started`) is written beside the model, and the folder appears as `folder`."""
    with new_folder(folder, "model") as work:
        yield work
        seconds = round(time.perf_counter() - started, 2)
        (work / FOLD_INFO).write_text(json.dumps({**info, "seconds": seconds}, indent=2), encoding="utf-8")


def train_cross_encoder_fold(rows: list[tuple[str, str, float]], base_path: str, folder: Path, *, epochs: float, batch_size: int,
                lr: float, max_length: int, bf16: bool, seed: int, info: dict[str, Any], progress: Progress,
                stage: str, checkpoints: Checkpoints | None = None) -> None:
    """Train one fold's CrossEncoder on `rows` and save it as `folder`, atomically (`_saving_fold`); with
    `checkpoints` a stopped fold resumes where it was (models/checkpoints.py)."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import PrinterCallback, set_seed

    from ..models.loading import default_device
    from ..models.memory import reusing_heap

    started = time.perf_counter()
    set_seed(seed)  # the new head is drawn from torch's global generator when the model is built
    device = default_device()
    with _quiet("transformers.modeling_utils", "sentence_transformers"):  # the head it reports missing is the new one
        model = CrossEncoder(base_path, num_labels=1, max_length=max_length, device=device, local_files_only=True)
    # The trainer's scratch folder lies beside the fold, never in it (a killed run's is removed with the .tmp ones).
    with reusing_heap(), _saving_fold(folder, info, started) as work, \
            tempfile.TemporaryDirectory(prefix=f".{folder.name}.trainer.", suffix=".tmp", dir=folder.parent) as scratch, \
            session(checkpoints, scratch) as run:
        args = CrossEncoderTrainingArguments(
            output_dir=run.output_dir, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=lr, warmup_steps=0.1, seed=seed, data_seed=seed, save_strategy="no",
            logging_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            dataloader_pin_memory=device != "cpu", use_cpu=device == "cpu", bf16=bf16,
        )
        data = Dataset.from_dict({"query": [r[0] for r in rows], "document": [r[1] for r in rows],
                                  "label": [r[2] for r in rows]})
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data,
                                      loss=BinaryCrossEntropyLoss(model),
                                      callbacks=[*run.callbacks, report_steps(progress, stage)])
        trainer.remove_callback(PrinterCallback)  # progress goes through `progress`; it would print the final loss
        trainer.train(resume_from_checkpoint=run.resume_from)
        model.save(str(work))
        del trainer, model  # before the heap is handed back (models/memory.py), as models.fit does
