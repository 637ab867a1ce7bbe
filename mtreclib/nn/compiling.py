"""Whether ``torch.compile`` is tracing: the fast paths written with autograd Functions step aside then."""

from __future__ import annotations

import torch


def compiling() -> bool:
    """True while ``torch.compile`` traces the caller (PyTorch 2.3 and later can tell)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())
