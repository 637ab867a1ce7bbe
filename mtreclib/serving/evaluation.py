"""A saved model's per-task AUC, GAUC (where the rows have groups) and log-loss on a split of a dataset, without training.

The split is cut as the training run cut it (its validation rows carved from the training
split with the run's own settings), and scored by ``mtreclib.scoring.logits`` with the run's
batch size and precision, as training scored it: a checkpoint's test metrics are the training
run's. Nothing of training is built (no trainer, no strategy), so a run evaluates whatever
strategy settings it was trained with. A dataset whose encoding
differs from the checkpoint's (vocabularies or transforms fitted on other training data) is
refused: its ids would mean other values to the model, and the metrics would be silently wrong.
"""

from __future__ import annotations

from typing import Any

import torch

from mtreclib.core.errors import UserError
from mtreclib.core.metrics import logit_metrics, task_metrics
from mtreclib.data.datasets import Dataset, load_dataset
from mtreclib.data.table import MultiTaskTable, split_validation
from mtreclib.runs.record import RunRecord, metrics_map
from mtreclib.scoring import logits
from mtreclib.serving.inference import Inference

SPLITS = ("test", "valid", "train")


def _describe(entry: dict[str, Any]) -> str:
    if "values" in entry:
        return f"a vocabulary of {len(entry['values']):,} values"
    if "max_id" in entry:
        return f"ids up to {entry['max_id']}"
    if entry.get("params"):
        return ", ".join(f"{key} {value:.6g}" for key, value in entry["params"].items())
    return str(entry.get("spec", {}))


def encoding_difference(checkpoint: dict[str, Any], dataset: dict[str, Any]) -> str | None:
    """The first difference that matters between two encodings (``Encoders.to_dict``), or None.

    Counts kept for ``mtrec inspect`` (``stats``) and the spec's file names do not matter;
    every feature's kind, vocabulary and fitted transform do.
    """
    for kind, label in (("categorical", "categorical"), ("bags", "multi-valued"), ("numerical", "numerical")):
        ours, theirs = checkpoint.get(kind, []), dataset.get(kind, [])
        names = [e["spec"]["name"] for e in ours], [e["spec"]["name"] for e in theirs]
        if names[0] != names[1]:
            return f"{label} features {', '.join(names[1]) or 'none'}, the model's are {', '.join(names[0]) or 'none'}"
        for a, b in zip(ours, theirs):
            a, b = {k: v for k, v in a.items() if k != "stats"}, {k: v for k, v in b.items() if k != "stats"}
            if a != b:
                name = a["spec"]["name"]
                if a["spec"] != b["spec"]:
                    return f"{label} feature {name} is read differently ({b['spec']}, the model's: {a['spec']})"
                return f"{label} feature {name} has {_describe(b)}, the model's has {_describe(a)}"
    return None


def check_encoding(inference: Inference, dataset: Dataset) -> None:
    difference = encoding_difference(inference.encoding, dataset.encoding)
    if difference is not None:
        raise UserError(
            f"dataset {dataset.name}: its encoding differs from the checkpoint's ({difference}): its vocabularies or transforms "
            f"were fitted on other training data, so the model would read other values; evaluate on the data it was trained on"
        )


def split_table(dataset: Dataset, split: str, inference: Inference) -> MultiTaskTable:
    """Split ``split`` as the training run saw it."""
    if split not in SPLITS:
        raise UserError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    if split == "test":
        return dataset.test
    data, train = inference.config.data, inference.config.train
    if dataset.valid is not None:
        return dataset.valid if split == "valid" else dataset.train
    fit, valid = split_validation(dataset.train, data.valid_fraction, mode=data.valid_split, seed=train.seed)
    return valid if split == "valid" else fit


def table_logits(inference: Inference, table: MultiTaskTable) -> torch.Tensor:
    """(N, T) float32 logits of ``table``'s rows: the model at its batch size and the run's precision."""
    return logits(inference.model, table, batch_size=inference.batch_size, device=inference.device, precision=inference.precision)


def evaluate_checkpoint(
    inference: Inference,
    dataset: str | None = None,
    *,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    split: str = "test",
    progress: bool = True,
    gauc_group: str | None = None,
) -> RunRecord:
    """The model's per-task metrics on ``split`` of ``dataset`` (default: the dataset it was trained on).

    ``gauc_group``: the column GAUC groups rows by (default: the run's ``--gauc-group``, else the
    spec's ``group``). Returns the results record ``mtrec train`` writes, with ``split`` set and
    no training figures.
    """
    if split not in SPLITS:
        raise UserError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    config = inference.config
    group = gauc_group or config.data.gauc_group
    loaded = load_dataset(dataset or config.data.dataset, data_dir or config.data.data_dir, progress=progress, cache_dir=cache_dir, group=group)
    check_encoding(inference, loaded)
    loaded = loaded.select_tasks(inference.tasks)
    table = split_table(loaded, split, inference)
    if len(table) == 0:
        raise UserError(f"dataset {loaded.name}: the {split} split has no rows")
    # The run's own batch size and precision: the same batches, so the same figures as training reported.
    tasks = logit_metrics(table_logits(inference, table), table.label_rows(), inference.tasks, inference.schema.task_types, groups=table.group)
    probabilities = table.probability_rows()
    oracle = task_metrics(probabilities, table.label_rows(), inference.tasks, groups=table.group) if probabilities is not None else None
    return RunRecord(
        model=config.model,
        dataset=loaded.name,
        tasks=metrics_map(tasks),
        config=config.to_dict(),
        best_epoch=inference.epoch,
        oracle=metrics_map(oracle),
        parameters=sum(p.numel() for p in inference.model.parameters()),
        rows={split: len(table)},
        device=str(inference.device),
        checkpoint=str(inference.path),
        seed=config.train.seed,
        split=split,
    )
