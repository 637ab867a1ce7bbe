"""The torchrec backend's tables sharded across the torchrun processes, by TorchRec's planner.

Each ``FieldEmbedding``'s ``EmbeddingBagCollection`` (built on the meta device, so no process
ever allocates a whole table) becomes a ``ShardedEmbeddingBagCollection``: TorchRec's planner
places each table (whole on one process: table-wise; split by rows or by columns over all of
them) within each process's memory, each process allocates and initialises only its shards,
and every lookup sends ids to their shards and pooled embeddings back (all-to-all over gloo or
NCCL). The fused optimizer runs on each shard in the backward pass, on the mean of the
processes' gradients (TorchRec averages them as DistributedDataParallel averages the dense
ones: the tests check two processes against one on the same global batches). The dense layers stay
replicated under DistributedDataParallel, which is told to leave the shards alone.

Checkpoints hold whole tables: ``distributed.gather_state`` assembles every sharded tensor on
rank 0 (its rows and columns from each process), so a sharded run's checkpoint loads in one
process like a dense one; ``distributed.load_state`` hands each process its part of whole tables
again (``--resume``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mtreclib.config.experiment import SHARDINGS, TrainConfig
from mtreclib.embeddings.tables import TorchRecTables


def shard_tables(model: nn.Module, train: TrainConfig, device: torch.device) -> list[dict[str, Any]]:
    """Shard every torchrec table of ``model`` over the default process group, in place, with
    ``train.sharding`` (each table keeps the optimizer and learning rate ``use_torchrec`` gave it).

    Returns the plan: one entry per table (module, table, sharding type, and per process its
    rows, columns and bytes), the same on every rank.
    """
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.distributed.shard import shard_modules
    from torchrec.distributed.types import ShardingEnv

    tables = [(name, module) for name, module in model.named_modules() if isinstance(module, TorchRecTables)]
    if not tables:
        return []
    first = tables[0][1]
    sharder = _sharder_class()(fused_params={"optimizer": getattr(EmbOptimType, first.optimizer.fbgemm), "learning_rate": first.lr})
    # The settings' names are TorchRec's sharding types; ``auto`` lets the planner choose among them.
    allowed = [s for s in SHARDINGS if s != "auto"] if train.sharding == "auto" else [train.sharding]
    constraints = {config.name: ParameterConstraints(sharding_types=allowed) for _, module in tables for config in module.configs}
    world_size = dist.get_world_size()
    topology = Topology(world_size=world_size, local_world_size=world_size, compute_device=device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    # The collections sit outside the model's module tree (tables.py): planned and sharded together
    # in one container, so that the planner weighs every table against each process's memory at once.
    holder = nn.ModuleDict({f"tables_{i}": module.ebc for i, (_, module) in enumerate(tables)})
    plan = planner.collective_plan(holder, [sharder], dist.GroupMember.WORLD)
    shard_modules(holder, ShardingEnv.from_process_group(dist.GroupMember.WORLD), device, plan, [sharder])
    for (_, module), ebc in zip(tables, holder.values()):
        module.set_collection(ebc)
    return describe_plan(model)


def _sharder_class() -> type:
    """TorchRec's sharder of embedding-bag collections, offering row-wise sharding on CPU too.

    TorchRec lists row-wise sharding among the CPU's choices only for CUDA; its pieces (fbgemm's
    bucketisation of ids by row range, the all-to-alls) run on CPU over gloo, and the two-process
    tests check that a row-wise run trains to one process's parameters.
    """
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.types import ShardingType

    class Sharder(EmbeddingBagCollectionSharder):
        def sharding_types(self, compute_device_type: str) -> list[str]:
            types = super().sharding_types(compute_device_type)
            return types if ShardingType.ROW_WISE.value in types else [*types, ShardingType.ROW_WISE.value]

    return Sharder


def describe_plan(model: nn.Module) -> list[dict[str, Any]]:
    """Which table lives where: per table, its sharding type and each process's rows, columns and bytes."""
    described = []
    for path, module in model.named_modules():
        if not isinstance(module, TorchRecTables):
            continue
        plan = getattr(module.ebc, "module_sharding_plan", None)
        for config in module.configs:
            parameter = plan[config.name] if plan is not None else None
            shards = []
            if parameter is not None and parameter.sharding_spec is not None:
                for shard in parameter.sharding_spec.shards:
                    rows, columns = shard.shard_sizes
                    shards.append({"rank": shard.placement.rank(), "rows": rows, "columns": columns, "row_offset": shard.shard_offsets[0],
                                   "column_offset": shard.shard_offsets[1], "bytes": rows * columns * 4})
            described.append({
                "module": path,
                "table": config.name,
                "rows": config.num_embeddings,
                "sharding": parameter.sharding_type if parameter is not None else "unsharded",
                "shards": shards,
            })
    return described
