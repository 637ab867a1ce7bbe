"""Dropout after ReLU, with masks drawn fast on CPU.

On CPU, PyTorch draws dropout masks one element at a time through its Mersenne Twister (MKL's
vectorised generator is used on Intel CPUs only): for the experts' (2048, 4096) activations that
takes longer than their matrix products. Here NumPy's PCG64, seeded from PyTorch's generator (so
``torch.manual_seed`` still decides every mask), gives raw 64-bit words, each cut into four 16-bit
draws: a quarter of the generator calls of one float per element, and no conversion to floats.
An element is kept when its draw is below ``round(keep * 2^16)``: with probability ``keep`` to
within 2^-17.

ReLU and dropout together make one product by the mask, one clamp and one scaling in place; the
backward pass is ReLU's own kernel (``threshold_backward``) on the saved output, and a scaling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mtreclib.nn.compiling import compiling

DRAW_BITS = 16


def dropout_mask(shape: torch.Size, keep: float, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability ``keep`` (to within 2^-17).

    Other devices than the CPU use ``torch.rand``.
    """
    if device.type != "cpu":
        return torch.rand(shape, device=device) < keep
    return torch.from_numpy(_draws(shape) < _threshold(keep)).view(shape)


def _keep_factors(shape: torch.Size, keep: float, dtype: torch.dtype) -> torch.Tensor:
    """``dropout_mask(shape, keep, cpu)`` as 1.0 and 0.0 of ``dtype`` (float32 or float64), from the
    same draws: the comparison writes the floats itself, sparing a bool mask and its conversion."""
    draws = _draws(shape)
    factors = np.empty(draws.shape, dtype=np.float32 if dtype == torch.float32 else np.float64)
    np.less(draws, _threshold(keep), out=factors, casting="unsafe")
    return torch.from_numpy(factors).view(shape)


def _draws(shape: torch.Size) -> np.ndarray:
    """(prod(shape),) uint16 draws from PCG64 seeded by PyTorch's generator."""
    seed = int(torch.randint(0, 2**63 - 1, ()))
    count = math.prod(shape)
    words = np.random.PCG64(seed).random_raw(-(-count // 4))  # (ceil(count / 4),) uint64
    return words.view(np.uint16)[:count]  # four 16-bit draws a word


def _threshold(keep: float) -> int:
    return round(keep * 2**DRAW_BITS)


class _ReluDropout(torch.autograd.Function):
    """``dropout(relu(x))`` in fewer passes over memory, saving only its output for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = 1.0 - p
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            mask = _keep_factors(x.shape, keep, x.dtype)
        else:
            mask = dropout_mask(x.shape, keep, x.device)
        out = x.mul(mask).clamp_min_(0).mul_(1.0 / keep)
        ctx.save_for_backward(out)
        ctx.scale = 1.0 / keep
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        # out > 0 exactly where x > 0 and the element was kept: ReLU's backward on the output.
        return torch.ops.aten.threshold_backward(grad, out, 0).mul_(ctx.scale), None


def relu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(F.relu(x), p, training)``: the same distribution, faster masks on CPU."""
    if not training or p == 0.0:
        return F.relu(x)
    if p >= 1.0:
        return torch.zeros_like(x)
    if compiling():
        return F.dropout(F.relu(x), p, training=True)  # the compiler fuses both, with its own generator
    return _ReluDropout.apply(x, p)

