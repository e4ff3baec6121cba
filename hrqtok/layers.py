"""Encoder/decoder building blocks: Euclidean MLPs and hyperbolic (Möbius) MLPs.

Hyperbolic layers follow Ganea et al. (2018, §3.2): a Möbius matrix-vector product, a Möbius
bias on the ball, and nonlinearities applied in the tangent space at the origin.
"""

from __future__ import annotations

import math

import geoopt
import torch
from torch import Tensor, nn

from hrqtok import geometry


class MobiusLinear(nn.Module):
    """y = (W ⊗_c x) ⊕_c b; W is Euclidean, b is a point of the ball (a ManifoldParameter)."""

    def __init__(self, in_dim: int, out_dim: int, *, c: float):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default
        self.bias = geoopt.ManifoldParameter(torch.zeros(out_dim), manifold=geometry.ball(c))

    def forward(self, x: Tensor) -> Tensor:
        h = geometry.mobius_matvec(self.weight, x, c=self.c)
        return geometry.project(geometry.mobius_add(h, self.bias, c=self.c), c=self.c)


class MobiusReLU(nn.Module):
    """ReLU through the tangent space at the origin: exp0(relu(log0(x)))."""

    def __init__(self, *, c: float):
        super().__init__()
        self.c = c

    def forward(self, x: Tensor) -> Tensor:
        return geometry.expmap0(torch.relu(geometry.logmap0(x, c=self.c)), c=self.c)


def build_mlp(dims: list[int], *, hyperbolic: bool, c: float = 1.0) -> nn.Sequential:
    """Linear layers dims[0] -> dims[1] -> … with ReLU between them (none after the last).

    Hyperbolic MLPs take and return points of the ball of curvature ``c``.
    """
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(MobiusReLU(c=c) if hyperbolic else nn.ReLU())
        layers.append(MobiusLinear(d_in, d_out, c=c) if hyperbolic else nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)
