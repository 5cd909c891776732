"""Stage 8a, train: fine-tune a bi-encoder on an hnm export, with the recipe of the proof protocol.

The recipe is /work/shared/reference/finetune_protocol.py's, through the same sentence-transformers trainer and the
same arguments (1 epoch, batch 32, lr 2e-5, 10% linear warmup, seed 0, the no-duplicates batch sampler, the model's
own max length), so a model trained here on an export equals the protocol's `file:` arm on that export's n-tuple file.

Losses: "mnrl" (MultipleNegativesRankingLoss on `ntuple`: the positive against its n negatives and every other
document of the batch), "cached_mnrl" (its gradient-cached variant: the same loss, for batches larger than memory
allows) and "margin_mse" (MarginMSELoss on `ntuple_scores`: the student's margins sim(q, pos) - sim(q, neg_i) learn
the teacher's, from the `label` column [score(pos), score(neg_1), ..., score(neg_n)] of the export; the student's
sim is the dot product of its embeddings, so the teacher's scores should be on a comparable scale, e.g. a
bi-encoder teacher's cosines). A file of (anchor, positive) pairs alone trains the MNRL losses on in-batch negatives
only (the proof loop's pairs arm).

The output folder is a sentence-transformers model (load it with SentenceTransformer(path) or pass it as --model to
any hnm command) plus manifest.json: the export it came from (path, file and manifest hashes, fingerprints), every
setting, versions, rows trained on and seconds. It is written beside its final path and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import DataError, SettingsError
from ..manifest import digest, file_digest, package_versions
from ..models.checkpoints import Checkpoints
from ..models.fit import LOSSES, Loss, fit
from ..models.loading import load_bi_encoder, resolve_precision
from ..outputs.folder import check_out, write_output
from ..progress import Progress, no_progress
from ..settings import setting

__all__ = ["TrainResult", "train_model", "training_file", "file_digest"]


"""Loss name -> (the export format it trains on, the sentence-transformers loss class)."""


@dataclass(frozen=True)
class TrainResult:
    """Where the model went and what the run did (`manifest` is the manifest.json written beside the weights)."""

    out_dir: Path
    rows: int
    steps: int
    training_loss: float
    seconds: float
    manifest: dict[str, Any]


def training_file(export_dir: str | Path, loss: str = setting("loss").default) -> Path:
    """The file `loss` trains on: `export_dir` itself when it is a file, else the export's ntuple (or ntuple_scores
    for margin_mse) file, Parquet before JSONL."""
    path = Path(export_dir)
    if loss not in LOSSES:
        raise SettingsError(f"loss {loss!r} is not one of {', '.join(LOSSES)}")
    if path.is_file():
        return path
    fmt = LOSSES[loss][0]
    if not path.is_dir():
        raise DataError(path, "does not exist", fix="pass the output folder of `hnm mine` or `hnm curate`")
    for suffix in (".parquet", ".jsonl"):
        if (path / f"{fmt}{suffix}").is_file():
            return path / f"{fmt}{suffix}"
    raise DataError(path, f"has no {fmt}.parquet or {fmt}.jsonl for loss {loss}",
                    fix=f"export with the {fmt} format, e.g. `hnm curate {path} --out DIR --formats {fmt}`")


def train_model(
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    model: str = setting("train_model").default,
    loss: Loss = setting("loss").default,
    epochs: int = setting("epochs").default,
    batch_size: int = setting("train_batch_size").default,
    lr: float = setting("lr").default,
    warmup_ratio: float = setting("warmup_ratio").default,
    seed: int = setting("seed").default,
    max_pairs: int | None = setting("max_pairs").default,
    precision: str = setting("train_precision").default,
    checkpoint_minutes: float = setting("checkpoint_minutes").default,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
    extra_manifest: dict[str, Any] | None = None,
    progress: Progress = no_progress,
) -> TrainResult:
    """Fine-tune `model` on the export in `export_dir` (or on one n-tuple file) and save it to `out_dir`.

    model: the starting bi-encoder: a sentence-transformers name or folder (all-MiniLM-L6-v2 works offline).
    loss: "mnrl", "cached_mnrl" (both on ntuple) or "margin_mse" (on ntuple_scores).
    epochs, batch_size, lr, warmup_ratio, seed: the trainer's num_train_epochs, per_device_train_batch_size,
        learning_rate, warmup (share of the steps) and seed; the defaults (settings `epochs`, `train_batch_size`,
        `lr`, `warmup_ratio`, `seed`) are the proof protocol's.
    max_pairs: train on a seeded random subset of this many rows (file order kept), for large exports.
    precision: "auto" (default: bf16 where the hardware has it natively, fp32 elsewhere), "bf16" (mixed precision:
        bf16 autocast, fp32 weights) or "fp32" (the reference protocol's). Measured on two CPU cores (docs/proof.md):
        SciFact's naive file trained in bf16 in 956 s against 1,578 s and scored nDCG@10 0.6895 against 0.6896.
    checkpoint_minutes, cache_dir: the training saves itself every this many minutes (0: never) under
        `cache_dir/trainings/` (default $HNM_CACHE_DIR or ~/.cache/hnm); the same training started again after a
        stop resumes from its last checkpoint, to the same weights (models/checkpoints.py).
    overwrite: replace a model folder hnm wrote earlier (only its files: see outdir.py); without it an existing
        output is refused, and a non-empty folder hnm did not write is refused either way.
    device: "cpu", "cuda", ...; default a GPU when there is one.
    extra_manifest: more top-level manifest keys (the CLI adds its command line); plain JSON values only.
    """
    _check(loss, epochs, batch_size, lr, warmup_ratio, seed, max_pairs, precision)
    setting("checkpoint_minutes").check(checkpoint_minutes)
    out = check_out(out_dir, "model", overwrite=overwrite, inputs=[export_dir])
    path = training_file(export_dir, loss)
    table, rows_in_file = _read(path, loss, max_pairs, seed)

    started = time.perf_counter()
    ref = load_bi_encoder(model, precision="fp32", device=device)
    use_bf16 = resolve_precision(precision, ref.device) == "bf16"
    st_model = ref.model
    settings = {"model": model, "loss": loss, "loss_class": LOSSES[loss][1], "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "warmup_ratio": warmup_ratio, "seed": seed,
                "max_pairs": max_pairs, "precision": "bf16" if use_bf16 else "fp32",
                "batch_sampler": "no_duplicates", "max_seq_length": st_model.max_seq_length,
                "columns": table.column_names}
    # What a cached arm is keyed by: the data, the starting weights and the recipe (not the model's name).
    fingerprint = digest({"file": file_digest(path), "base_model": ref.fingerprint,
                          **{k: v for k, v in settings.items() if k != "model"}})
    checkpoints = Checkpoints(cache_dir, {"training": fingerprint, "device": ref.device}, checkpoint_minutes)
    with write_output(out, "model", overwrite=overwrite, inputs=[export_dir]) as tmp:
        output = fit(st_model, table, loss, epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=warmup_ratio,
                     seed=seed, bf16=use_bf16, cpu=ref.device == "cpu", progress=progress, checkpoints=checkpoints)
        st_model.save(str(tmp), create_model_card=False)
        seconds = round(time.perf_counter() - started + output.seconds_before, 1)
        manifest = {
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "export": _export_record(path),
            "base_model": {"name": ref.name, "path": ref.path, "fingerprint": ref.fingerprint},
            "settings": settings,
            "fingerprint": fingerprint,
            "rows": table.num_rows,
            "rows_in_file": rows_in_file,
            "steps": output.steps,
            "training_loss": output.training_loss,
            "seconds": seconds,
            "resumed_from_step": output.resumed_from,
            "device": ref.device,
            "versions": {**package_versions("datasets", "accelerate")},
            **(extra_manifest or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return TrainResult(out, table.num_rows, output.steps, output.training_loss, seconds, manifest)


def _check(loss: str, epochs: int, batch_size: int, lr: float, warmup_ratio: float, seed: int,
           max_pairs: int | None, precision: str) -> None:
    """Every setting before any work, each error with the accepted values."""
    if loss not in LOSSES:
        raise SettingsError(f"loss {loss!r} is not one of {', '.join(LOSSES)}")
    if precision not in ("auto", "fp32", "bf16"):
        raise SettingsError(f"precision {precision!r} is not one of auto, fp32, bf16")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SettingsError(f"{name} is {value!r}; it must be a whole number of at least {low}")
    if max_pairs is not None and (not isinstance(max_pairs, int) or isinstance(max_pairs, bool) or max_pairs < 1):
        raise SettingsError(f"max_pairs is {max_pairs!r}; it must be a whole number of at least 1, or None for all")
    if not (isinstance(lr, (int, float)) and 0 < lr < 1):
        raise SettingsError(f"lr is {lr!r}; it must be a number between 0 and 1 (the protocol's is 2e-5)")
    if not (isinstance(warmup_ratio, (int, float)) and 0 <= warmup_ratio < 1):
        raise SettingsError(f"warmup_ratio is {warmup_ratio!r}; it must be in [0, 1) (the protocol's is 0.1)")


def _read(path: Path, loss: str, max_pairs: int | None, seed: int) -> tuple[pa.Table, int]:
    """The training columns (anchor, positive, negative_1..n in numeric order, plus label for margin_mse), checked,
    and the number of rows in the file."""
    import pyarrow.compute as pc

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        reader = pq.read_table
    elif path.suffix == ".jsonl":
        import pyarrow.json as pj

        def reader(source: Path) -> pa.Table:
            # pyarrow cannot parse a line longer than its block (1 MiB by default); n-tuples of long documents can be.
            return pj.read_json(source, read_options=pj.ReadOptions(block_size=1 << 26))
    else:
        raise DataError(path, f"is a {path.suffix or 'suffix-less'} file", fix="train on an export's .parquet or .jsonl")
    try:
        table = reader(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(path, f"cannot be read ({str(error).splitlines()[0]})",
                        fix="pass a file written by hnm export") from None
    negatives = sorted((c for c in table.column_names if c.startswith("negative_") and c[9:].isdigit()),
                       key=lambda c: int(c[9:]))
    columns = ["anchor", "positive", *negatives] + (["label"] if loss == "margin_mse" else [])
    missing = [c for c in columns if c not in table.column_names]
    # (anchor, positive) pairs alone train MNRL on in-batch negatives (the proof's pairs arm); a file with some other
    # negative column (a triplet's `negative`) is refused rather than trained as pairs.
    pairs_only = loss != "margin_mse" and not any(c.startswith("negative") for c in table.column_names)
    if missing or not (negatives or pairs_only):
        raise DataError(path, f"has columns {', '.join(table.column_names)}; {LOSSES[loss][1]} needs anchor, positive, "
                              f"negative_1..negative_n{', label' if loss == 'margin_mse' else ''}",
                        fix=f"train on an export's {LOSSES[loss][0]} file")
    table = table.select(columns)
    if table.num_rows == 0:
        raise DataError(path, "has no rows", fix="export with fewer negatives or looser filters, so queries get the "
                                                 "full quota")
    if loss == "margin_mse":
        label = table["label"]
        lengths = pc.list_value_length(label).to_numpy(zero_copy_only=False)
        values = np.asarray(pc.list_flatten(label).to_numpy(zero_copy_only=False), dtype=np.float64)
        if (lengths != len(negatives) + 1).any() or not np.isfinite(values).all():
            raise DataError(path, f"label must hold {len(negatives) + 1} finite teacher scores per row "
                                  "[positive, negative_1, ...]", fix="export ntuple_scores with hnm")
        table = table.set_column(columns.index("label"), "label", label.cast(pa.list_(pa.float32())))
    rows_in_file = table.num_rows
    if max_pairs is not None and max_pairs < rows_in_file:
        keep = np.sort(np.random.default_rng(seed).choice(rows_in_file, max_pairs, replace=False))
        table = table.take(pa.array(keep))
    return table, rows_in_file


def _export_record(path: Path) -> dict[str, Any]:
    """What identifies the training data: the file's hash and, when it sits in an export folder, that export's
    manifest (its hash, fingerprints, collection and settings)."""
    record: dict[str, Any] = {"file": str(path.resolve()), "file_blake2b": file_digest(path)}
    manifest_path = path.parent / "manifest.json"
    if manifest_path.is_file():
        raw = manifest_path.read_bytes()
        record["manifest_blake2b"] = hashlib.blake2b(raw, digest_size=16).hexdigest()
        try:
            manifest = json.loads(raw)
        except ValueError:
            manifest = {}
        if isinstance(manifest, dict):
            record.update({key: manifest[key] for key in ("fingerprints", "collection", "settings", "files")
                           if key in manifest})
    return record
