"""``SplitAdam``: Adam for models whose embedding tables have sparse gradients.

Embedding tables built with ``sparse=True`` (``nn.Embedding`` / ``nn.EmbeddingBag``; every
table of both models) give gradients over the rows a batch touched only.
``torch.optim.SparseAdam`` updates those rows (lazy Adam: a row's moments advance only on
the steps that use it), ``torch.optim.Adam`` with ``weight_decay`` every other parameter
(the MLPs). A step then costs O(rows touched) instead of O(rows in the tables): with the
default 2^18-row tables, dense Adam spent about a CPU-second per step whatever the batch.
``weight_decay`` does not apply to the tables.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def sparse_tables(model: nn.Module) -> list[nn.Parameter]:
    """The weights of ``model``'s embedding tables with ``sparse=True`` (each once)."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) and module.sparse:
            found.setdefault(id(module.weight), module.weight)
    return list(found.values())


class SplitAdam:
    """SparseAdam over the sparse tables, Adam over the rest; the ``torch.optim`` calls a
    training loop makes (``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``)."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float = 0.0) -> None:
        sparse = sparse_tables(model)
        taken = {id(p) for p in sparse}
        dense = [p for p in model.parameters() if id(p) not in taken]
        self.optimizers: list[torch.optim.Optimizer] = []
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))
        if dense:
            self.optimizers.append(torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay))

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
