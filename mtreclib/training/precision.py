"""``--precision auto``: bf16 autocast only where it makes this model's step faster on this machine.

Whether bf16 pays depends on the hardware and on the model. A CPU without native bf16
arithmetic (no AVX-512 BF16, no AMX) emulates it, and its bf16 matrix products are slower than
its fp32 ones; with native bf16 the matrix products gain, but autocast adds casts that can eat
the gain in a model whose step is mostly not matrix products. So ``auto`` asks the hardware
first (no native bf16: fp32, nothing measured), then times the model's own forward and
backward at both precisions on one training batch and keeps bf16 only when it is clearly
faster. The probe leaves no trace: the weights, the BatchNorm statistics, the gradients and
the random generators are as they were, so a run that resolves to fp32 is the fp32 run
exactly. The choice is printed and saved in the run's configuration, which evaluation,
prediction and ``--resume`` then follow.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mtreclib.core.schema import Batch
from mtreclib.models.base import MultiTaskModel
from mtreclib.scoring.logits import autocast

# bf16 is kept when its step takes at most this share of the fp32 step's time: a margin over
# the probe's noise, so that ``auto`` is never slower than fp32 by chance.
MARGIN = 0.9
REPEATS = 3


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16)."""
    capability = getattr(torch._C._cpu, "_get_cpu_capability", None)  # noqa: SLF001 - PyTorch's own CPU feature probe
    if capability is not None:
        flags = capability()
        return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in text.split() for flag in ("avx512_bf16", "amx_bf16"))


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def step_seconds(model: MultiTaskModel, batches: Sequence[Batch], precision: str, device: torch.device) -> float:
    """The fastest of ``REPEATS`` forward-and-backward passes of ``model``'s loss at ``precision`` (after one warm-up)."""
    times = []
    for _ in range(REPEATS + 1):
        _synchronise(device)
        start = time.perf_counter()
        with autocast(device, precision):
            loss = model.training_loss(batches)
        loss.backward()
        _synchronise(device)
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return min(times[1:])


def resolve_precision(
    requested: str, model: MultiTaskModel, batches: Callable[[], Sequence[Batch]], device: torch.device,
    *, measure: Callable[[MultiTaskModel, Sequence[Batch], str, torch.device], float] | None = None,
) -> tuple[str, str]:
    """``(precision, why)``: ``requested`` itself unless it is ``auto``, which becomes ``fp32`` or ``bf16``.

    ``batches``: gives one training step's batches (called only when a probe runs). ``measure``:
    the seconds of one step at a precision; ``step_seconds`` when None.
    """
    measure = measure or step_seconds
    if requested != "auto":
        return requested, "asked for"
    if not has_native_bf16(device):
        return "fp32", f"auto: {device.type} without native bf16"
    with _untouched(model, device):
        step = batches()
        fp32 = measure(model, step, "fp32", device)
        bf16 = measure(model, step, "bf16", device)
    choice = "bf16" if bf16 <= MARGIN * fp32 else "fp32"
    return choice, f"auto: a step took {fp32 * 1e3:.1f} ms in fp32, {bf16 * 1e3:.1f} ms in bf16"


@contextlib.contextmanager
def _untouched(model: MultiTaskModel, device: torch.device):
    """Runs the probe and puts back what it changes: buffers (BatchNorm statistics), gradients, random state, mode."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    training = model.training
    model.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        model.train(training)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
