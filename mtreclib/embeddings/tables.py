"""The torchrec backend's tables: one ``EmbeddingBagCollection`` per ``FieldEmbedding``.

Every single-valued and multi-valued field is a table of its own, fed one ``KeyedJaggedTensor``
per forward pass (a single-valued field: one id per row; a bag: its values, with their weights),
pooled by sum (``FieldEmbedding.sparse_fields`` turns sums into means where a bag asks for it).
In one process the collection is TorchRec's ``FusedEmbeddingBagCollection``: fbgemm's
table-batched kernel with the optimizer fused into its backward pass. Under torchrun it is a
plain ``EmbeddingBagCollection`` on the meta device that ``mtreclib.embeddings.sharding`` shards
across the processes (each allocates and initialises only its shards), with the same kernels.

The collection is held outside the module tree (not a registered child): its tables are no
parameters of the model, so the dense optimizer, the gradient methods' per-task gradients,
DistributedDataParallel and ``model.to`` never see them (the kernel updates them itself, and
a sharded table must not be broadcast as a replica). They are in the state dict all the same,
under TorchRec's names: ``ebc.embedding_bags.<table>.weight``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mtreclib.core.distributed import is_sharded, load_state
from mtreclib.embeddings.optimizers import FusedOptimizer
from mtreclib.nn.layers import SparseTables


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
        names: the tables' names (``field_0 ..``, ``bag_0 ..``), also the features' keys unless
            ``features`` says otherwise.
        rows: each table's vocabulary size.
        embed_dim: D, or each table's own width (per-field embeddings).
        bounds: each table's initialisation bound (uniform in [-bound, bound]).
        weighted: the lookups carry per-value weights.
        optimizer, lr: the fused optimizer and its learning rate.
        device: where the tables live.
        sharded: build an unsharded ``EmbeddingBagCollection`` on the meta device, for
            ``sharding.shard_tables`` (torchrun), instead of a fused one here.
        features: per table, the features (fields) that look their ids up in it: more than one
            for a shared table (``shared_with``, TorchRec's ``feature_names``); default its name.
        keys: the order in which the lookup takes and returns the features (the fields' order);
            default: as ``features`` lists them.
    """

    def __init__(
        self,
        names: Sequence[str],
        rows: Sequence[int],
        embed_dim: int | Sequence[int],
        bounds: Sequence[float],
        *,
        weighted: bool,
        optimizer: FusedOptimizer,
        lr: float,
        device: torch.device,
        sharded: bool = False,
        features: Sequence[Sequence[str]] | None = None,
        keys: Sequence[str] | None = None,
    ):
        super().__init__()
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
        from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection

        self.names = tuple(names)
        dims = [embed_dim] * len(self.names) if isinstance(embed_dim, int) else list(embed_dim)
        features = [[name] for name in self.names] if features is None else [list(f) for f in features]
        self.keys = tuple(keys) if keys is not None else tuple(f for table in features for f in table)  # the lookup's features
        self.embed_dim = embed_dim
        self.optimizer = optimizer
        self.lr = lr
        configs = [
            EmbeddingBagConfig(
                name=name,
                embedding_dim=int(dim),
                num_embeddings=int(n),
                feature_names=table_features,
                pooling=PoolingType.SUM,
                weight_init_min=-bound,
                weight_init_max=bound,
            )
            for name, n, dim, bound, table_features in zip(self.names, rows, dims, bounds, features)
        ]
        self.configs = configs
        if sharded:
            ebc: nn.Module = EmbeddingBagCollection(configs, is_weighted=weighted, device=torch.device("meta"))
        else:
            ebc = FusedEmbeddingBagCollection(
                configs, optimizer_type=_optimizer_class(optimizer), optimizer_kwargs={"lr": lr}, is_weighted=weighted, device=device
            )
        self.set_collection(ebc)
        self.weighted = weighted

    def set_collection(self, ebc: nn.Module) -> None:
        """Hold ``ebc`` outside the module tree (see the module's docstring)."""
        object.__setattr__(self, "ebc", ebc)

    @property
    def element_count(self) -> int:
        """Weights in all the tables (whole, over every process)."""
        return sum(config.num_embeddings * config.embedding_dim for config in self.configs)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination.update(self.ebc.state_dict(prefix=prefix + "ebc.", keep_vars=keep_vars))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
        for key, target in self.ebc.state_dict(prefix=prefix + "ebc.").items():
            if key not in state_dict:
                missing_keys.append(key)
                continue
            with torch.no_grad():
                load_state(target, state_dict[key])  # in place: the kernel's own storage, or this process's shards

    def forward(
        self, values: Sequence[torch.Tensor], lengths: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None, batch_size: int
    ) -> torch.Tensor:
        """Per feature (``keys``) (N_t,) ids, (B,) lengths, optional (N_t,) weights -> (B, tables * D)
        summed bags (the features' widths side by side with per-field embeddings)."""
        from torchrec import KeyedJaggedTensor

        features = KeyedJaggedTensor(
            keys=list(self.keys),
            values=torch.cat(list(values)),
            lengths=torch.cat(list(lengths)),
            weights=torch.cat(list(weights)) if self.weighted and weights is not None else None,
            stride=batch_size,
        )
        if torch.is_inference_mode_enabled():
            # fbgemm registers its training lookups for autograd only, which inference mode skips.
            with torch.inference_mode(False), torch.no_grad():
                return self._ordered(self.ebc(features))  # (B, tables * D)
        return self._ordered(self.ebc(features))  # (B, tables * D)

    def _ordered(self, pooled) -> torch.Tensor:
        """The pooled embeddings in the features' order (a sharded collection returns them grouped by shard)."""
        if list(pooled.keys()) == list(self.keys):
            return pooled.values()
        by_key = pooled.to_dict()
        return torch.cat([by_key[name] for name in self.keys], dim=1)

    def table_keys(self, prefix: str) -> list[str]:
        return [f"{prefix}ebc.embedding_bags.{name}.weight" for name in self.names]

    def load_field_weights(self, tables: Sequence[torch.Tensor]) -> None:
        self._load_from_state_dict(dict(zip(self.table_keys(""), tables)), "", {}, True, [], [], [])

    def field_weights(self) -> list[torch.Tensor]:
        state = self.ebc.state_dict(prefix="ebc.")
        return [state[key].detach() for key in self.table_keys("")]

    def kernels(self) -> list[nn.Module]:
        """fbgemm's table-batched kernels that hold (this process's part of) the tables."""
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import SplitTableBatchedEmbeddingBagsCodegen

        found = [m for m in self.ebc.modules() if isinstance(m, SplitTableBatchedEmbeddingBagsCodegen)]
        for lookup in getattr(self.ebc, "_emb_modules", ()):  # the fused collection keeps them unregistered
            found += [m for m in lookup.modules() if isinstance(m, SplitTableBatchedEmbeddingBagsCodegen)]
        return found

    def autograd_leaves(self) -> list[torch.Tensor]:
        return [kernel.placeholder_autograd_tensor for kernel in self.kernels()]

    def _fused(self):
        fused = self.ebc.fused_optimizer  # a method of the fused collection, a property of the sharded one
        return fused() if callable(fused) else fused

    def optimizer_state(self) -> dict:
        """This process's part of the fused optimizer's state (its shards' accumulators), as plain
        tensors: under torchrun each process holds the state of its own shards only."""
        state = self._fused().state_dict()["state"]
        return {key: {name: _local(value) for name, value in entry.items()} for key, entry in state.items()}

    def load_optimizer_state(self, state: dict) -> None:
        """Inverse of ``optimizer_state`` (same tables, same processes, same plan)."""
        current = self._fused().state_dict()["state"]
        for key, entry in current.items():
            for name, target in entry.items():
                source = state[key][name]
                with torch.no_grad():
                    if is_sharded(target):
                        for shard, part in zip(target.local_shards(), source):
                            shard.tensor.copy_(part)
                    else:
                        target.copy_(source)


def _local(value: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    """A copy of a plain tensor, or of a sharded tensor's local shards."""
    if is_sharded(value):
        return [shard.tensor.detach().clone() for shard in value.local_shards()]
    return value.detach().clone()


def xavier_bound(rows: int, embed_dim: int) -> float:
    """The bound of ``nn.init.xavier_uniform_`` on a (rows, D) table, as the dense backend initialises it."""
    return math.sqrt(6.0 / (rows + embed_dim))
