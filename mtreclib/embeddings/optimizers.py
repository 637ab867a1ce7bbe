"""The fused optimizers of the torchrec backend's tables, by name, and where each device runs them.

fbgemm's table-batched kernels update a table's rows inside the backward pass (the optimizer is
fused into it), touching only the rows a batch looked up: a step costs what the batch costs,
whatever the vocabulary. On CPU fbgemm implements exact SGD, exact Adagrad and exact row-wise
Adagrad (one accumulator per row instead of per element: a table's optimizer state is one float
a row); Adam only on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtreclib.core.errors import UserError


@dataclass(frozen=True)
class FusedOptimizer:
    """One fused optimizer: its name here, fbgemm's ``EmbOptimType`` name and the devices that run it."""

    name: str
    fbgemm: str
    devices: tuple[str, ...]
    summary: str


OPTIMIZERS = {
    o.name: o
    for o in (
        FusedOptimizer("rowwise_adagrad", "EXACT_ROWWISE_ADAGRAD", ("cpu", "cuda"), "Adagrad with one accumulator per row (TorchRec's default)"),
        FusedOptimizer("adagrad", "EXACT_ADAGRAD", ("cpu", "cuda"), "Adagrad with one accumulator per element"),
        FusedOptimizer("sgd", "EXACT_SGD", ("cpu", "cuda"), "plain SGD on the rows a batch touched"),
        FusedOptimizer("adam", "ADAM", ("cuda",), "Adam on the rows a batch touched (lazy: other rows' moments wait)"),
    )
}


def fused_optimizer(name: str, device: torch.device) -> FusedOptimizer:
    """The optimizer ``name`` if ``device`` runs it; otherwise one line naming what it does run."""
    optimizer = OPTIMIZERS[name]
    if device.type not in optimizer.devices:
        runs = ", ".join(o.name for o in OPTIMIZERS.values() if device.type in o.devices)
        raise UserError(f"--embedding-optimizer {name}: fbgemm runs it only on {', '.join(optimizer.devices)}; on {device.type} choose one of {runs}")
    return optimizer
