"""Putting a model's field embeddings on the torchrec backend."""

from __future__ import annotations

import torch
from torch import nn

from mtreclib.core.errors import UserError
from mtreclib.embeddings.available import check_torchrec
from mtreclib.embeddings.optimizers import fused_optimizer
from mtreclib.nn.layers import FieldEmbedding


def check_backend(optimizer: str, embed_dim: int | None, device: torch.device) -> None:
    """What ``use_torchrec`` would refuse, refused before any data is read: the packages, the
    optimizer on this device, an embedding size fbgemm's kernels take."""
    check_torchrec()
    fused_optimizer(optimizer, device)
    if embed_dim is not None and embed_dim % 4:
        raise UserError(f"embed_dim (--embed-dim) must be a multiple of 4 on the torchrec backend (fbgemm's kernels), got {embed_dim}")


def use_torchrec(model: nn.Module, *, optimizer: str, lr: float, device: torch.device, sharded: bool = False) -> nn.Module:
    """Hand every ``FieldEmbedding`` of ``model`` to TorchRec tables, in place; returns ``model``.

    Tables that exist (not meta) are copied in, so a dense model's weights carry over exactly;
    a model built under ``layers.deferred_tables()`` gets tables initialised as the dense backend
    initialises its own (uniform within the Xavier bound of the dense table each field is part
    of). ``sharded``: leave the tables unsharded on the meta device for ``sharding.shard_tables``.
    """
    modules = [m for m in model.modules() if isinstance(m, FieldEmbedding) and m.tables is None]
    for module in modules:
        check_backend(optimizer, module.embed_dim, device)
        for name, width in zip(module.table_names(), module.table_dims()):
            if width % 4:
                field = module.spec_names[module.feature_names().index(name)] if module.spec_names else name
                raise UserError(f"embedding_dim of field {field} must be a multiple of 4 on the torchrec backend (fbgemm's kernels), got {width}")
    from mtreclib.embeddings.tables import TorchRecTables, xavier_bound

    spec = fused_optimizer(optimizer, device)
    for module in modules:
        rows, dims = module.table_rows(), module.table_dims()
        if module.uniform:
            single = xavier_bound(module.embedding.weight.shape[0], module.embed_dim)
            bags = xavier_bound(module.bag_embedding.weight.shape[0], module.embed_dim) if module.bag_fields else 0.0
            bounds = [single] * len(module.field_dims) + [bags] * len(module.bag_fields)
        else:  # per-field embeddings: each table its own nn.Embedding, initialised within its own bound
            bounds = [xavier_bound(n, d) for n, d in zip(rows, dims)]
        weighted = any(b.weighted for b in module.bag_fields)
        tables = TorchRecTables(
            module.table_names(), rows, dims, bounds, weighted=weighted, optimizer=spec, lr=lr, device=device, sharded=sharded,
            features=module.table_features(), keys=module.feature_names(),
        )  # fmt: skip
        module.attach_tables(tables)
    return model
