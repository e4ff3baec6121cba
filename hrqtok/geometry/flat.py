"""Flat-space distance matrices from one matrix product: the ‖x‖² + ‖v‖² - 2⟨x, v⟩ expansion,
written once. ``manifolds.Euclidean`` uses it as is; the ball's distance keys scale it."""

from __future__ import annotations

import torch
from torch import Tensor


def code_scores(x: Tensor, points: Tensor) -> Tensor:
    """(n, m) ‖v‖² - 2⟨x, v⟩ from one matrix product: ‖x - v‖² less the row's ‖x‖²."""
    return torch.addmm(points.pow(2).sum(-1), x, points.transpose(0, 1), alpha=-2.0)


def squared_distance_matrix(x: Tensor, points: Tensor) -> Tensor:
    """(n, m) ‖x_i - v_j‖² from one matrix product (clamped at 0 against cancellation)."""
    return code_scores(x, points).add_(x.pow(2).sum(-1, keepdim=True)).clamp_(min=0)
