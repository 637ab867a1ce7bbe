"""TensorBoard logs of a run (optional: ``pip install "mtreclib[tensorboard]"``).

Per step: the training loss and each task's loss; per epoch: each task's validation AUC and
log-loss, the mean training loss and the strategy's task weights. Written with PyTorch's own
``SummaryWriter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtreclib.core.atomic import write_errors
from mtreclib.core.errors import UserError


def check_available() -> None:
    """Refuse ``--tensorboard`` before training when the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError('--tensorboard needs the tensorboard package: pip install "mtreclib[tensorboard]"') from None


class TensorBoardLog:
    """Writes a run's figures under ``folder`` (one run folder per run, named like its checkpoints')."""

    def __init__(self, folder: str | Path, task_names: Sequence[str]):
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.task_names = tuple(task_names)
        self.folder = Path(folder)
        with write_errors(self.folder, flag="--tensorboard"):
            self.writer = SummaryWriter(log_dir=str(folder))

    def step(self, step: int, loss: float, task_losses: Sequence[float]) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        for task, value in zip(self.task_names, task_losses):
            self.writer.add_scalar(f"train/loss_{task}", value, step)

    def epoch(self, record: dict) -> None:
        epoch = record["epoch"]
        self.writer.add_scalar("epoch/train_loss", record["train_loss"], epoch)
        for task, weight in record.get("task_weights", {}).items():
            self.writer.add_scalar(f"epoch/weight_{task}", weight, epoch)
        for task, metrics in (record.get("valid") or {}).items():
            for name, value in metrics.items():  # auc, logloss, gauc; rmse and mae for a regression task
                if value is not None and name not in ("gauc_groups", "gauc_skipped"):
                    self.writer.add_scalar(f"valid/{name}_{task}", value, epoch)
        with write_errors(self.folder, flag="--tensorboard"):
            self.writer.flush()

    def close(self) -> None:
        with write_errors(self.folder, flag="--tensorboard"):
            self.writer.close()
