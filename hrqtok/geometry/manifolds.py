"""The two latent spaces as objects, in geoopt's shape: ``Euclidean()`` and ``PoincareBall(c)``.

Everything that depends on the geometry takes one of these, never a curvature that may be None
or a ``hyperbolic`` flag: quantizers, k-means, the closure ranking, the contrastive loss, the
layers and both models. Each method is a thin shell over one function of the functional core
(``poincare``); in Euclidean space the same operation is plain vector arithmetic. Shapes: points
are (..., dim) over the last dimension; distances drop it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hrqtok.geometry import ball_autograd, flat, poincare
from hrqtok.geometry.columns import row_argmin
from hrqtok.geometry.constants import ARCOSH_MARGIN, MIN_NORM, SEARCH_KEYS, margin
from hrqtok.geometry.poincare import DistanceParts


class Manifold:
    """The operations hrqtok needs of a latent space; subclasses implement them."""

    name: str  # what config.json's "geometry" calls it
    # distances are coordinate distances: the coordinate mean of points is their Fréchet mean,
    # and ‖x - y‖² is d(x, y)²
    flat: bool

    def parameter(self, data: Tensor) -> nn.Parameter:
        """A trainable tensor of points (codebooks, biases) that optimisers keep on the manifold."""
        raise NotImplementedError

    def project(self, x: Tensor) -> Tensor:
        """Pull points back onto the manifold (numerical safety)."""
        raise NotImplementedError

    def check(self, x: Tensor, *, what: str = "point") -> None:
        """Raise ValueError naming the manifold, the norm found and the bound, for points off it."""

    def expmap0(self, v: Tensor) -> Tensor:
        """Tangent vector at the origin -> point."""
        raise NotImplementedError

    def logmap0(self, x: Tensor) -> Tensor:
        """Point -> tangent vector at the origin."""
        raise NotImplementedError

    def expmap(self, x: Tensor, v: Tensor) -> Tensor:
        raise NotImplementedError

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        """x ⊕ y: a residual added back to a code."""
        raise NotImplementedError

    def sub(self, residual: Tensor, code: Tensor) -> Tensor:
        """(-code) ⊕ residual: what is left of a residual after its code (left subtraction,
        undone exactly by ``add(code, ·)``)."""
        raise NotImplementedError

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Geodesic distance, (...,)."""
        raise NotImplementedError

    def squared_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x, y)², (...,)."""
        raise NotImplementedError

    def dist0(self, x: Tensor) -> Tensor:
        """Distance from the origin, (...,)."""
        raise NotImplementedError

    def distance_keys(self, x: Tensor, points: Tensor, *, across_rows: bool = True) -> Tensor:
        """(n, m) keys increasing with d(x_i, points_j), from one matrix product. With
        ``across_rows=False`` they only order each row (terms constant in a row left out)."""
        raise NotImplementedError

    def nearest_keys(self, x: Tensor, points: Tensor) -> Tensor:
        """(n, m) keys whose order along each row is that of d(x_i, points_j): what nearest
        search takes the row minimum of."""
        return self.distance_keys(x, points, across_rows=False)

    def squared_distances(self, x: Tensor, points: Tensor) -> Tensor:
        """(n, m) d(x_i, points_j)², from one matrix product."""
        raise NotImplementedError

    def nearest(self, x: Tensor, codebook: Tensor) -> Tensor:
        """argmin_j d(x_i, codebook_j): x (n, dim), codebook (s, dim) -> (n,) int64, in chunks
        of rows (about SEARCH_KEYS keys each), never building an (n × s × dim) tensor."""
        rows = max(1, SEARCH_KEYS // max(len(codebook), 1))
        out = [row_argmin(self.nearest_keys(chunk, codebook)) for chunk in x.split(rows)]
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=x.device)

    def distance_parts(self, sq: Tensor, x2: Tensor, y2: Tensor) -> DistanceParts:
        """Distances from ‖x - y‖², ‖x‖², ‖y‖² (broadcast together), with the intermediates
        that ``distance_chain`` reuses."""
        raise NotImplementedError

    def distance_chain(self, grad_dist: Tensor, parts: DistanceParts) -> tuple[Tensor, Tensor, Tensor]:
        """dL/d‖x-y‖², dL/d‖x‖², dL/d‖y‖² from dL/dd: the gradient in x is then
        2(x - y)·first + 2x·second (in y: 2(y - x)·first + 2y·third)."""
        raise NotImplementedError

    def squared_distance_grads(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """d(x, y)² and its gradients in x and in y, in closed form (finite where x = y)."""
        raise NotImplementedError

    def rsgd_step(self, x: Tensor, grad: Tensor, lr: float, *,
                  max_length: float | None = None) -> Tensor:
        """One (Riemannian) SGD step; ``max_length`` clips each row's step to that length in
        the manifold's own metric."""
        raise NotImplementedError

    def gradient_norm(self, x: Tensor, grad: Tensor) -> Tensor:
        """(n,) length, in the manifold's metric at x (n, dim), of the Riemannian gradient
        whose Euclidean gradient is ``grad`` (n, dim)."""
        raise NotImplementedError

    def midpoint(self, x: Tensor, groups: Tensor, count: int) -> Tensor:
        """(count, dim) centre of the points x (n, dim) of each group (n,) labelled 0..count-1;
        a group with no point gets the origin."""
        raise NotImplementedError


class Euclidean(Manifold):
    """Flat space R^dim: the RQ-VAE and rq-kmeans."""

    name = "euclidean"
    flat = True

    def __repr__(self) -> str:
        return "Euclidean()"

    def __eq__(self, other) -> bool:
        return isinstance(other, Euclidean)

    def __hash__(self) -> int:
        return hash(self.name)

    def parameter(self, data: Tensor) -> nn.Parameter:
        return nn.Parameter(data)

    def project(self, x: Tensor) -> Tensor:
        return x

    def expmap0(self, v: Tensor) -> Tensor:
        return v

    def logmap0(self, x: Tensor) -> Tensor:
        return x

    def expmap(self, x: Tensor, v: Tensor) -> Tensor:
        return x + v

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        return y - x

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y

    def sub(self, residual: Tensor, code: Tensor) -> Tensor:
        return residual - code

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).norm(dim=-1)

    def squared_dist(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).pow(2).sum(-1)

    def dist0(self, x: Tensor) -> Tensor:
        return x.norm(dim=-1)

    def distance_keys(self, x: Tensor, points: Tensor, *, across_rows: bool = True) -> Tensor:
        """‖x - v‖² (‖v‖² - 2⟨x, v⟩ without ``across_rows``)."""
        if not across_rows:
            return flat.code_scores(x, points)
        return flat.squared_distance_matrix(x, points)

    def squared_distances(self, x: Tensor, points: Tensor) -> Tensor:
        return flat.squared_distance_matrix(x, points)

    def distance_parts(self, sq: Tensor, x2: Tensor, y2: Tensor) -> DistanceParts:
        return DistanceParts(sq.clamp_min(MIN_NORM ** 2).sqrt(), sq, None, None, None)

    def distance_chain(self, grad_dist: Tensor, parts: DistanceParts) -> tuple[Tensor, Tensor, Tensor]:
        a = grad_dist / (2 * parts.dist)
        return a, torch.zeros_like(a), torch.zeros_like(a)

    def squared_distance_grads(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return (x - y).pow(2).sum(-1), 2 * (x - y), 2 * (y - x)

    def rsgd_step(self, x: Tensor, grad: Tensor, lr: float, *,
                  max_length: float | None = None) -> Tensor:
        step = lr * grad
        if max_length is not None:
            step = step * (max_length / poincare.norm(step)).clamp_max(1.0)
        return x - step

    def gradient_norm(self, x: Tensor, grad: Tensor) -> Tensor:
        return grad.norm(dim=-1)

    def midpoint(self, x: Tensor, groups: Tensor, count: int) -> Tensor:
        counts = torch.bincount(groups, minlength=count).unsqueeze(-1)
        sums = torch.zeros(count, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, groups, x)
        return sums / counts.clamp_min(1).to(x.dtype)


class PoincareBall(Manifold):
    """The Poincaré ball {x : c‖x‖² < 1} of curvature c: HRQ, HyperVQ and hrq-kmeans."""

    name = "hyperbolic"
    flat = False

    def __init__(self, c: float = 1.0):
        if not c > 0:
            raise ValueError(f"the Poincaré ball needs a curvature > 0, got {c}")
        self.c = float(c)

    def __repr__(self) -> str:
        return f"PoincareBall(c={self.c:g})"

    def __eq__(self, other) -> bool:
        return isinstance(other, PoincareBall) and other.c == self.c

    def __hash__(self) -> int:
        return hash((self.name, self.c))

    def parameter(self, data: Tensor) -> nn.Parameter:
        import geoopt

        return geoopt.ManifoldParameter(self.project(data), manifold=poincare.ball(self.c))

    def project(self, x: Tensor) -> Tensor:
        return poincare.project(x, c=self.c)

    def check(self, x: Tensor, *, what: str = "point") -> None:
        poincare.check_on_ball(x, c=self.c, what=what)

    # exp0, log0 and the projected sums take ``ball_autograd``'s closed-form backward passes
    # when they need gradients, at a fraction of autograd's op count: the values of
    # ``poincare``'s functions (exp0, log0 to the bit, the sums to rounding)
    def expmap0(self, v: Tensor) -> Tensor:
        return ball_autograd.expmap0(v, c=self.c)

    def logmap0(self, x: Tensor) -> Tensor:
        return ball_autograd.logmap0(x, c=self.c)

    def expmap(self, x: Tensor, v: Tensor) -> Tensor:
        return poincare.expmap(x, v, c=self.c)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        return poincare.logmap(x, y, c=self.c)

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        return ball_autograd.add(x, y, c=self.c)

    def sub(self, residual: Tensor, code: Tensor) -> Tensor:
        return ball_autograd.add(-code, residual, c=self.c)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return poincare.dist(x, y, c=self.c)

    def squared_dist(self, x: Tensor, y: Tensor) -> Tensor:
        return poincare.dist(x, y, c=self.c).pow(2)

    def dist0(self, x: Tensor) -> Tensor:
        return poincare.dist0(x, c=self.c)

    def distance_keys(self, x: Tensor, points: Tensor, *, across_rows: bool = True) -> Tensor:
        return poincare.distance_keys(x, points, c=self.c, across_rows=across_rows)

    def nearest_keys(self, x: Tensor, points: Tensor) -> Tensor:
        return poincare.nearest_keys(x, points, c=self.c)

    def squared_distances(self, x: Tensor, points: Tensor) -> Tensor:
        """From the keys ‖x - v‖² / ((1 - c‖x‖²)(1 - c‖v‖²)): d = arcosh(1 + 2c·key) / √c."""
        keys = self.distance_keys(x, points)
        floor = 1.0 + margin(ARCOSH_MARGIN, keys.dtype)
        return (poincare.arcosh((1 + 2 * self.c * keys).clamp_min(floor)) / math.sqrt(self.c)).pow(2)

    def distance_parts(self, sq: Tensor, x2: Tensor, y2: Tensor) -> DistanceParts:
        return poincare.distance_parts(sq, x2, y2, c=self.c)

    def distance_chain(self, grad_dist: Tensor, parts: DistanceParts) -> tuple[Tensor, Tensor, Tensor]:
        return poincare.distance_chain(grad_dist, parts, c=self.c)

    def squared_distance_grads(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return poincare.squared_distance_grads(x, y, c=self.c)

    def rsgd_step(self, x: Tensor, grad: Tensor, lr: float, *,
                  max_length: float | None = None) -> Tensor:
        return poincare.rsgd_step(x, grad, lr, c=self.c, max_length=max_length)

    def gradient_norm(self, x: Tensor, grad: Tensor) -> Tensor:
        # the Riemannian gradient is grad / λ_x², and the metric scales lengths by λ_x
        return grad.norm(dim=-1) / poincare.lambda_x(x, c=self.c).squeeze(-1)

    def midpoint(self, x: Tensor, groups: Tensor, count: int) -> Tensor:
        """The Einstein midpoint, a closed-form stand-in for the Fréchet mean."""
        return poincare.einstein_midpoint(x, groups, count, c=self.c)

    def mlr_logits(self, x: Tensor, normals: Tensor, offsets: Tensor) -> Tensor:
        """Unidirectional hyperbolic MLR logits (HyperVQ levels), see ``poincare.mlr_logits``."""
        return poincare.mlr_logits(x, normals, offsets, c=self.c)


MANIFOLDS = ("hyperbolic", "euclidean")


def manifold(name: str, curvature: float = 1.0) -> Manifold:
    """The manifold config.json's "geometry" names: "hyperbolic" (a ball of ``curvature``) or
    "euclidean"."""
    if name == PoincareBall.name:
        return PoincareBall(curvature)
    if name == Euclidean.name:
        return Euclidean()
    raise ValueError(f"geometry must be one of {', '.join(MANIFOLDS)}, got {name!r}")
