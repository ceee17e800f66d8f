"""Epoch selection on validation for ``feedray evaluate``'s models: one record per epoch.

``EarlyStop`` keeps the per-epoch curve (epoch, mean training loss, validation metric,
seconds since start), the best epoch's weights (a deep copy of ``state_dict()``) and says
when ``patience`` epochs have passed without a better validation value. The two-tower
(``train.evaluate``) and the ranker (``train.eval_pipeline``) both select with it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class EarlyStop:
    """Best-on-validation tracking for one training run (``metric`` names the curve column)."""

    def __init__(self, metric: str, patience: int, clock=time.perf_counter) -> None:
        self.metric, self.patience, self.clock = metric, patience, clock
        self.t0 = clock()
        self.curve: list[dict[str, Any]] = []
        self.best_value, self.best_epoch = -np.inf, -1
        self.best_state: dict[str, Any] | None = None
        self.best_extra: dict[str, Any] = {}

    def update(
        self, model: torch.nn.Module, losses: Sequence[float], value: float, **extra: Any
    ) -> bool:
        """Record the epoch just trained; keep ``model``'s weights (and ``extra``) when
        ``value`` is the best so far. True when training should stop."""
        epoch = len(self.curve)
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), self.metric: float(value)}
        self.curve.append(row | extra | {"s": round(self.clock() - self.t0, 1)})
        if value > self.best_value:
            self.best_value, self.best_epoch = float(value), epoch
            self.best_state, self.best_extra = copy.deepcopy(model.state_dict()), dict(extra)
            return False
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best epoch's weights into ``model``."""
        if self.best_state is None:
            raise RuntimeError("no epoch was recorded")
        model.load_state_dict(self.best_state)

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def summary(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch + 1,
            "epochs_run": len(self.curve),
            "valid_curve": self.curve,
        }

    def last(self) -> str:
        """The latest epoch's record as one log line."""
        row = self.curve[-1]
        value = row[self.metric]
        return f"epoch {row['epoch']}: loss {row['loss']:.4f} valid {value:.4f} at {row['s']}s"
