"""Scoring a model: its logits over rows, at the precision it was asked for. Training and serving both use it."""

from mtreclib.scoring.logits import autocast, batch_logits, logits

__all__ = ["autocast", "batch_logits", "logits"]
