"""The nearest-code level (RQ, HRQ and the residual k-means quantizers): level i holds a
codebook C_i of points on the manifold, and a residual takes its nearest code,
t_i = argmin_j d(r_i, C_i[j])."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrqtok.geometry import Manifold
from hrqtok.quantize.levels import plain

INIT_SCALE = 1e-2  # codebooks start as small Gaussian noise; fit replaces them by k-means


class NearestCode:
    """Codebooks as parameters of the manifold's type (geoopt ManifoldParameters on the ball)."""

    differentiable = False  # the choice is an argmin: nothing learns it through y
    temperature = None  # no sampling, nothing to anneal
    # the refit after training starts at level 2: the first level's codes are the trained ones
    refit_from = 1

    def __init__(self, manifold: Manifold, levels: int, size: int, dim: int):
        self.manifold = manifold
        self.codebooks = nn.ParameterList(
            [manifold.parameter(torch.randn(size, dim) * INIT_SCALE) for _ in range(levels)])

    def parameter_lists(self) -> dict[str, nn.ParameterList]:
        return {"codebooks": self.codebooks}

    def parameters_of(self, level: int) -> list[nn.Parameter]:
        return [self.codebooks[level]]

    def points(self, level: int) -> Tensor:
        return self.codebooks[level]

    def choose(self, level: int, residual: Tensor, points: Tensor) -> Tensor:
        """(n,) index of each residual's nearest code among ``points`` (plain values)."""
        return self.manifold.nearest(residual, points)

    def costs(self, level: int, residual: Tensor, points: Tensor) -> Tensor:
        """(n, s) squared distances: what balanced assignment trades off."""
        return self.manifold.squared_distances(residual, points)

    def pick(self, level: int, residual: Tensor, points: Tensor, training: bool,
             choose) -> tuple[Tensor, Tensor, Tensor]:
        """forward()'s choice, by ``choose`` (nearest or balanced): (codes, e_i with its
        gradient to the codebook, e_i for y)."""
        code = choose(level, residual.detach(), plain(points))
        e = points[code]
        return code, e, e.detach()

    @torch.no_grad()
    def set_codes(self, level: int, points: Tensor, index: Tensor | None = None) -> None:
        target = self.codebooks[level]
        if index is None:
            target.copy_(self.manifold.project(points))
        else:
            target[index] = self.manifold.project(points)
