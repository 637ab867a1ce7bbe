"""Data-parallel training with PyTorch's own engine: torchrun and DistributedDataParallel.

One process per device. ``torchrun`` starts the processes and tells each one where it stands
through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``); this module turns that into a process group (``nccl`` on CUDA, ``gloo`` on
CPU), a device per local rank, the DDP wrapper, and the few collectives the trainer needs: a
value decided on rank 0 and broadcast, and predictions gathered to rank 0.

A single process (no torchrun, or ``WORLD_SIZE=1``) never creates a process group, and every
helper here then does nothing, so the trainer runs one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mtreclib.core.errors import UserError

T = TypeVar("T")

# What torchrun (and torch.distributed.launch before it) sets in every process it starts.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class ProcessPlace:
    """Where this process stands among the training processes.

    Attributes:
        rank: 0 .. world_size - 1 over all machines; rank 0 logs, checkpoints and writes results.
        world_size: number of training processes.
        local_rank: 0 .. processes on this machine - 1; picks this process's GPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that prints, checkpoints and writes results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: torch.device) -> torch.device:
        """This process's device: CUDA without an index becomes ``cuda:LOCAL_RANK``."""
        if requested.type != "cuda" or not self.distributed:
            return requested
        if requested.index is not None:
            raise UserError(
                f"with {self.world_size} processes each one takes cuda:LOCAL_RANK; "
                f"use --device cuda or auto instead of {requested} (CUDA_VISIBLE_DEVICES picks the GPUs)"
            )
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"local rank {self.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node"
            )
        return torch.device("cuda", self.local_rank)


def place_from_environment(environ: Mapping[str, str] = os.environ) -> ProcessPlace:
    """The place torchrun gave this process, or a single process when not launched by it."""
    present = [name for name in LAUNCH_VARIABLES if name in environ]
    if not present:
        return ProcessPlace()
    if len(present) < len(LAUNCH_VARIABLES):
        missing = ", ".join(name for name in LAUNCH_VARIABLES if name not in environ)
        raise UserError(f"incomplete launch environment: {', '.join(present)} set but {missing} not; start the run with torchrun")
    try:
        rank, world_size, local_rank = (int(environ[name]) for name in LAUNCH_VARIABLES)
    except ValueError:
        values = ", ".join(f"{name}={environ[name]!r}" for name in LAUNCH_VARIABLES)
        raise UserError(f"launch environment is not integers: {values}") from None
    if not (world_size >= 1 and 0 <= rank < world_size and 0 <= local_rank <= rank):
        raise UserError(f"inconsistent launch environment: RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}")
    return ProcessPlace(rank, world_size, local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs; Gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(place: ProcessPlace, device: torch.device, *, timeout: timedelta | None = None) -> Iterator[None]:
    """Join the default process group for the duration of the block (nothing for one process).

    Rendezvous is torchrun's: ``MASTER_ADDR`` and ``MASTER_PORT`` from the environment.
    ``timeout``: how long a collective waits for the other ranks (PyTorch's default if None).
    """
    if not place.distributed:
        yield
        return
    if device.type == "cuda":
        # Before the group exists, so that NCCL and object collectives use this process's GPU.
        torch.cuda.set_device(device)
    options = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend_for(device), rank=place.rank, world_size=place.world_size, **options)
    try:
        yield
    finally:
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel: gradients are averaged over processes in backward.

    Buffers (BatchNorm's running statistics) are broadcast from rank 0 at every forward, DDP's
    default; each process normalises with its own batch's statistics (plain BatchNorm, not
    SyncBatchNorm). Every parameter must get a gradient from every step
    (``find_unused_parameters`` stays off, which is faster and makes a dead parameter an error).
    """
    if not active():
        raise RuntimeError("DistributedDataParallel needs an initialised process group of more than one process")
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` on every rank (a picklable object); ``value`` itself for one process."""
    if not active():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Make every rank's buffers (BatchNorm running statistics) rank ``src``'s.

    DDP broadcasts them at the start of each forward, so after the last training step every
    other rank still holds statistics updated by its own last batch; evaluation must use one
    model, rank 0's.
    """
    if not active():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over all ranks (``values`` itself for one process)."""
    if not active():
        return values
    total = values.clone()
    dist.all_reduce(total)
    return total


def shard_range(batch_num: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous run ``[first, last)`` of ``batch_num`` batches (evaluation shards)."""
    return batch_num * rank // world_size, batch_num * (rank + 1) // world_size


def gather_rows(local: torch.Tensor, dst: int = 0) -> torch.Tensor | None:
    """Every rank's ``(n_r, ...)`` rows concatenated in rank order on rank ``dst``; None elsewhere.

    ``local`` must be on the backend's device (CUDA for NCCL). Ranks may hold different numbers of
    rows: each pads to the largest, and ``dst`` cuts the padding off.
    """
    if not active():
        return local
    world_size = dist.get_world_size()
    count = torch.tensor([local.shape[0]], device=local.device)
    counts = [torch.empty_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = local.new_zeros((max(sizes), *local.shape[1:]))
    padded[: local.shape[0]] = local
    if dist.get_rank() != dst:
        dist.gather(padded, None, dst=dst)
        return None
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.gather(padded, parts, dst=dst)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``values`` over all ranks (``values`` itself for one process)."""
    if not active():
        return values
    return sum_over_ranks(values) / dist.get_world_size()


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over all ranks (parameters outside DDP)."""
    if not active():
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= dist.get_world_size()


def all_gather_object(value: T) -> list[T]:
    """Every rank's picklable ``value``, in rank order (``[value]`` for one process)."""
    if not active():
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def is_sharded(value: object) -> bool:
    """A ``ShardedTensor`` (TorchRec's sharded tables and their optimizer state)."""
    return hasattr(value, "local_shards") and hasattr(value, "gather")


def gather_state(state: T) -> T:
    """``state`` (nested dicts and lists) with every sharded tensor assembled whole on rank 0.

    A collective: every rank calls it with the same structure (a model's state dict: every rank
    holds every table's ``ShardedTensor``, shards or not). Other ranks get None in place of each
    sharded tensor (they write no checkpoint). Without sharded tensors ``state`` itself.
    """
    return _gathered(state) if active() and _holds_sharded(state) else state


def _gathered(state: object) -> object:  # gather_state's walk, once it is known to hold sharded tensors
    if isinstance(state, dict):
        return {key: _gathered(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_gathered(value) for value in state)
    if is_sharded(state):
        whole = torch.empty(state.size(), dtype=state.dtype) if dist.get_rank() == 0 else None
        state.gather(dst=0, out=whole)
        return whole
    return state


def _holds_sharded(state: object) -> bool:
    if isinstance(state, dict):
        return any(_holds_sharded(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return any(_holds_sharded(value) for value in state)
    return is_sharded(state)


def load_state(target: object, whole: object) -> None:
    """Copy ``whole`` into ``target`` in place: a whole tensor into a sharded one's local shards
    (each its rows and columns), a sharded tensor of the same sharding shard by shard."""
    if is_sharded(target) and is_sharded(whole):
        for shard, source in zip(target.local_shards(), whole.local_shards()):
            shard.tensor.copy_(source.tensor)
    elif is_sharded(target):
        for shard in target.local_shards():
            offsets, sizes = shard.metadata.shard_offsets, shard.metadata.shard_sizes
            index = tuple(slice(o, o + s) for o, s in zip(offsets, sizes))
            shard.tensor.copy_(whole[index])
    else:
        target.copy_(whole)
