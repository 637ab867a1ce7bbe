"""The torchrec backend's tables: one ``EmbeddingBagCollection`` per ``FieldEmbedding``.

Every single-valued and multi-valued field is a table of its own, fed one ``KeyedJaggedTensor``
per forward pass (a single-valued field: one id per row; a bag: its values, with their weights),
pooled by sum (``FieldEmbedding.sparse_fields`` turns sums into means where a bag asks for it).
In one process the collection is TorchRec's ``FusedEmbeddingBagCollection``: fbgemm's
table-batched kernel with the optimizer fused into its backward pass. Under torchrun it is a
plain ``EmbeddingBagCollection`` on the meta device that ``mtreclib.embeddings.sharding`` shards
across the processes (each allocates and initialises only its shards), with the same kernels.

The tables' weights are parameters of the module (their state dict is TorchRec's), but they
do not take part in the dense optimizer or the gradient methods' per-task gradients:
``requires_grad`` is off on the views TorchRec exposes, and the kernel updates them itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mtreclib.embeddings.optimizers import FusedOptimizer
from mtreclib.layers import SparseTables


def _optimizer_class(optimizer: FusedOptimizer) -> type[torch.optim.Optimizer]:
    import torchrec.optim

    return {
        "rowwise_adagrad": torchrec.optim.RowWiseAdagrad,
        "adagrad": torch.optim.Adagrad,
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
    }[optimizer.name]


class TorchRecTables(SparseTables):
    """One table per field in a TorchRec embedding-bag collection, updated by a fused optimizer.

    Args:
        names: the tables' names (``field_0 ..``, ``bag_0 ..``), also the features' keys.
        rows: each table's vocabulary size.
        embed_dim: D.
        bounds: each table's initialisation bound (uniform in [-bound, bound]).
        weighted: the lookups carry per-value weights.
        optimizer, lr: the fused optimizer and its learning rate.
        device: where the tables live.
        sharded: build an unsharded ``EmbeddingBagCollection`` on the meta device, for
            ``sharding.shard_tables`` (torchrun), instead of a fused one here.
    """

    def __init__(
        self,
        names: Sequence[str],
        rows: Sequence[int],
        embed_dim: int,
        bounds: Sequence[float],
        *,
        weighted: bool,
        optimizer: FusedOptimizer,
        lr: float,
        device: torch.device,
        sharded: bool = False,
    ):
        super().__init__()
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
        from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection

        self.names = tuple(names)
        self.embed_dim = embed_dim
        self.optimizer = optimizer
        self.lr = lr
        configs = [
            EmbeddingBagConfig(
                name=name,
                embedding_dim=embed_dim,
                num_embeddings=int(n),
                feature_names=[name],
                pooling=PoolingType.SUM,
                weight_init_min=-bound,
                weight_init_max=bound,
            )
            for name, n, bound in zip(self.names, rows, bounds)
        ]
        self.configs = configs
        if sharded:
            self.ebc: nn.Module = EmbeddingBagCollection(configs, is_weighted=weighted, device=torch.device("meta"))
        else:
            self.ebc = FusedEmbeddingBagCollection(
                configs, optimizer_type=_optimizer_class(optimizer), optimizer_kwargs={"lr": lr}, is_weighted=weighted, device=device
            )
            self.freeze_views()
        self.weighted = weighted

    def freeze_views(self) -> None:
        """Keep the tables out of the dense optimizer and the per-task gradients: the fused kernel updates them."""
        for parameter in self.ebc.parameters():
            parameter.requires_grad_(False)

    def forward(
        self, values: Sequence[torch.Tensor], lengths: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None, batch_size: int
    ) -> torch.Tensor:
        """Per table (N_t,) ids, (B,) lengths, optional (N_t,) weights -> (B, tables * D) summed bags."""
        from torchrec import KeyedJaggedTensor

        features = KeyedJaggedTensor(
            keys=list(self.names),
            values=torch.cat(list(values)),
            lengths=torch.cat(list(lengths)),
            weights=torch.cat(list(weights)) if self.weighted and weights is not None else None,
            stride=batch_size,
        )
        if torch.is_inference_mode_enabled():
            # fbgemm registers its training lookups for autograd only, which inference mode skips.
            with torch.inference_mode(False), torch.no_grad():
                return self.ebc(features).values()  # (B, tables * D)
        return self.ebc(features).values()  # (B, tables * D)

    def table_keys(self, prefix: str) -> list[str]:
        return [f"{prefix}ebc.embedding_bags.{name}.weight" for name in self.names]

    def load_field_weights(self, tables: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for name, table in zip(self.names, tables):
                self.ebc.embedding_bags[name].weight.copy_(table)

    def field_weights(self) -> list[torch.Tensor]:
        return [self.ebc.embedding_bags[name].weight.detach() for name in self.names]

    def kernels(self) -> list[nn.Module]:
        """fbgemm's table-batched kernels that hold (this process's part of) the tables."""
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import SplitTableBatchedEmbeddingBagsCodegen

        found = [m for m in self.ebc.modules() if isinstance(m, SplitTableBatchedEmbeddingBagsCodegen)]
        for lookup in getattr(self.ebc, "_emb_modules", ()):  # the fused collection keeps them unregistered
            found += [m for m in lookup.modules() if isinstance(m, SplitTableBatchedEmbeddingBagsCodegen)]
        return found

    def autograd_leaves(self) -> list[torch.Tensor]:
        return [kernel.placeholder_autograd_tensor for kernel in self.kernels()]

    def optimizer_state(self) -> dict:
        return self.ebc.fused_optimizer().state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        self.ebc.fused_optimizer().load_state_dict(state)


def xavier_bound(rows: int, embed_dim: int) -> float:
    """The bound of ``nn.init.xavier_uniform_`` on a (rows, D) table, as the dense backend initialises it."""
    return math.sqrt(6.0 / (rows + embed_dim))
