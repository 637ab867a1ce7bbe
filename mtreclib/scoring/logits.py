"""A model's logits over a table or a stream of batches, at the precision it was asked for.

The one scoring path: the trainer's validation and test, ``mtrec evaluate``, ``mtrec predict``,
the Python API and the benchmarks all call ``logits`` (a table) or ``batch_logits`` (batches
already cut), so a row gets the same score whichever of them asks, under the run's precision
(``fp32``, or ``bf16`` autocast). Scoring needs a model and its rows, nothing of training: no
trainer, no optimizer, no strategy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

from mtreclib.config.experiment import PRECISIONS
from mtreclib.core.errors import UserError
from mtreclib.core.schema import Batch
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable
from mtreclib.models.base import MultiTaskModel


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context that runs forward passes at ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.inference_mode()
def batch_logits(model: MultiTaskModel, batches: Iterable[Batch], precision: str, *, rows: int | None = None) -> torch.Tensor:
    """(N, T) float32 logits on the CPU of every row of ``batches``, in order; the model in eval mode.

    ``rows``: the number of rows, when known, to fill one tensor instead of joining pieces.
    """
    model.eval()
    pieces: list[torch.Tensor] = []
    out = torch.empty(rows, model.task_num) if rows is not None else None
    start = 0
    for batch in batches:
        with autocast(batch.categorical.device, precision):
            scores = model.logits(batch)  # (B, T)
        if out is not None:
            out[start : start + batch.size] = scores.float().cpu()
        else:
            pieces.append(scores.float().cpu())
        start += batch.size
    if out is None:
        return torch.cat(pieces) if pieces else torch.empty(0, model.task_num)
    if start != rows:
        raise ValueError(f"the batches held {start} rows, expected {rows}")
    return out


@torch.inference_mode()
def logits(
    model: MultiTaskModel,
    table: MultiTaskTable,
    *,
    batch_size: int,
    device: torch.device,
    precision: str,
    forwards: int | None = None,
    spare: MultiTaskTable | None = None,
) -> torch.Tensor:
    """(N, T) float32 logits on the CPU of every row of ``table``, in order, ``batch_size`` rows a pass.

    ``forwards``: make that many forward passes in all, the ones past ``table``'s batches on a
    batch of ``spare`` (default: ``table``), their outputs dropped: a lookup in sharded tables is
    a collective, so every process must make as many as the others.
    """
    loader = BatchLoader(table, batch_size, device=device)
    out = batch_logits(model, loader, precision, rows=len(table))
    missing = 0 if forwards is None else forwards - len(loader)
    if missing > 0:
        filler = next(iter(BatchLoader(spare if spare is not None else table, batch_size, device=device)))
        for _ in range(missing):
            with autocast(device, precision):
                model.logits(filler)
    return out
