"""Whether the torchrec backend's packages are installed, said in one line when they are not."""

from __future__ import annotations

from mtreclib.core.errors import UserError

INSTALL_HINT = (
    "pip install fbgemm-gpu-cpu==1.8.0 tensordict torchmetrics==1.0.3 pyre-extensions iopath && "
    "pip install --no-deps torchrec==1.8.0 (with a CUDA build of PyTorch: the matching fbgemm-gpu instead of fbgemm-gpu-cpu; "
    "README: Embeddings at scale)"
)


def check_torchrec() -> None:
    """Import TorchRec and fbgemm, or stop with a ``UserError`` that says how to install them."""
    try:
        import fbgemm_gpu  # noqa: F401
        import torchrec  # noqa: F401
    except Exception as error:  # an ImportError, or fbgemm's own error when its build does not match torch's
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"--embedding-backend torchrec needs TorchRec and fbgemm ({reason}): {INSTALL_HINT}") from None
