"""Where the embedding tables live and how they learn: the dense backend (``nn.Embedding`` in every
``FieldEmbedding``, trained by the run's Adam) or the torchrec backend (TorchRec tables with
fbgemm's fused optimizers, sharded across processes under torchrun).

Nothing here is imported unless the torchrec backend is asked for: TorchRec and fbgemm are an
optional install (``available.INSTALL_HINT``).
"""

from mtreclib.embeddings.backend import use_torchrec
from mtreclib.embeddings.optimizers import OPTIMIZERS, fused_optimizer

__all__ = ["OPTIMIZERS", "fused_optimizer", "use_torchrec"]
