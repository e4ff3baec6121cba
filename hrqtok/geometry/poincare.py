"""Poincaré-ball geometry (HRQ paper §2, Ganea et al. 2018): the functional core.

In the style of geoopt: each operation is one function over the last dimension with
keyword-only curvature ``c > 0``; ``0`` in a name means "at the origin". The ball of curvature
c is ``{x : c‖x‖² < 1}``. ``manifolds.PoincareBall`` wraps these functions; geoopt supplies the
parameter type of codebooks and biases and the Riemannian optimiser, and the tests check these
functions against geoopt's own. Numerical constants live in ``constants``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import geoopt
import torch
from torch import Tensor

from hrqtok.geometry.constants import (
    ARCOSH_MARGIN,
    ARTANH_MARGIN,
    BALL_MARGIN,
    MIN_NORM,
    TANH_LIMIT,
)
from hrqtok.geometry.constants import margin as _margin
from hrqtok.geometry.flat import squared_distance_matrix


def ball(c: float) -> geoopt.PoincareBall:
    """The geoopt manifold for codebooks and biases of curvature ``c``."""
    return geoopt.PoincareBall(c=c)


def norm(x: Tensor, *, dim: int = -1, keepdim: bool = True) -> Tensor:
    """Euclidean norm with a floor, so that its gradient at 0 is finite."""
    return x.pow(2).sum(dim=dim, keepdim=keepdim).clamp_min(MIN_NORM**2).sqrt()


def max_norm(*, c: float, dtype: torch.dtype) -> float:
    """Largest norm a point may have on the ball of curvature ``c`` in ``dtype``."""
    return (1.0 - _margin(BALL_MARGIN, dtype)) / math.sqrt(c)


def project(x: Tensor, *, c: float, dim: int = -1) -> Tensor:
    """Pull points back inside the ball, to norm at most ``max_norm``; others are unchanged."""
    bound = max_norm(c=c, dtype=x.dtype)
    # one scale factor per point (1 inside the bound): a broadcast product is much cheaper to
    # differentiate than a where over two full-size branches
    return x * (bound / norm(x, dim=dim)).clamp_max(1.0)


def check_on_ball(x: Tensor, *, c: float, what: str = "point") -> None:
    """Raise ValueError naming the manifold, the largest norm found and the bound."""
    largest = float(norm(x.detach()).max()) if x.numel() else 0.0
    bound = 1.0 / math.sqrt(c)
    if not largest < bound:
        raise ValueError(
            f"{what} lies outside the Poincaré ball of curvature {c}: "
            f"norm {largest:.6g} >= bound {bound:.6g}"
        )


def artanh(x: Tensor) -> Tensor:
    limit = 1.0 - _margin(ARTANH_MARGIN, x.dtype)
    return torch.atanh(x.clamp(-limit, limit))


def tanh(x: Tensor) -> Tensor:
    return torch.tanh(x.clamp(-TANH_LIMIT, TANH_LIMIT))


def arcosh(z: Tensor) -> Tensor:
    """arcosh(z) for z ≥ 1 as log1p(w + √w·√(z + 1)), w = z - 1: within 4 ulps of torch's
    acosh (relative precision kept near 1, no overflow for large z) and 1.5–2× faster on the
    CPU, where acosh is not vectorised (a WordNet batch's 25,600 pair-negative distances took
    0.18 ms in float32)."""
    w = z - 1
    return torch.log1p(w + torch.sqrt(w) * torch.sqrt(z + 1))


def lambda_x(x: Tensor, *, c: float) -> Tensor:
    """Conformal factor λ_x = 2 / (1 - c‖x‖²), shape (..., 1)."""
    return 2.0 / (1.0 - c * x.pow(2).sum(-1, keepdim=True)).clamp_min(MIN_NORM)


def mobius_add(x: Tensor, y: Tensor, *, c: float) -> Tensor:
    """x ⊕_c y (HRQ paper §2). Neither commutative nor associative; left cancellation holds:
    x ⊕ ((-x) ⊕ y) = y."""
    x2 = x.pow(2).sum(-1, keepdim=True)
    y2 = y.pow(2).sum(-1, keepdim=True)
    xy = (x * y).sum(-1, keepdim=True)
    inverse = 1 / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(MIN_NORM)  # (..., 1)
    return ((1 + 2 * c * xy + c * y2) * inverse) * x + ((1 - c * x2) * inverse) * y


def expmap0(v: Tensor, *, c: float) -> Tensor:
    """Tangent vector at the origin -> point on the ball: tanh(√c‖v‖) v / (√c‖v‖)."""
    sqrt_c = math.sqrt(c)
    scaled = sqrt_c * norm(v)
    return project(v * (tanh(scaled) / scaled), c=c)


def logmap0(y: Tensor, *, c: float) -> Tensor:
    """Point on the ball -> tangent vector at the origin: artanh(√c‖y‖) y / (√c‖y‖)."""
    sqrt_c = math.sqrt(c)
    scaled = sqrt_c * norm(y)
    return y * (artanh(scaled) / scaled)


def dist(x: Tensor, y: Tensor, *, c: float, keepdim: bool = False) -> Tensor:
    """Geodesic distance 2/√c · artanh(√c‖(-x) ⊕ y‖), equal to Eq. 1's arcosh form but with a
    finite gradient at x = y."""
    sqrt_c = math.sqrt(c)
    d = 2.0 / sqrt_c * artanh(sqrt_c * norm(mobius_add(-x, y, c=c)))
    return d if keepdim else d.squeeze(-1)


def dist_arcosh(x: Tensor, y: Tensor, *, c: float) -> Tensor:
    """The same distance as ``dist``, as 1/√c · arcosh(1 + 2c‖x - y‖² / ((1 - c‖x‖²)(1 - c‖y‖²)))
    (Eq. 1): about 3x cheaper for broadcast batches, used to train embeddings. Its gradient
    is clamped finite, not exact, where x = y. Shapes broadcast over the last dimension."""
    floor = 1.0 + _margin(ARCOSH_MARGIN, x.dtype)
    sq = (x - y).pow(2).sum(-1)
    alpha = (1 - c * x.pow(2).sum(-1)).clamp_min(MIN_NORM)
    beta = (1 - c * y.pow(2).sum(-1)).clamp_min(MIN_NORM)
    return arcosh((1 + 2 * c * sq / (alpha * beta)).clamp_min(floor)) / math.sqrt(c)


class DistanceParts(NamedTuple):
    """A distance with the intermediates its closed-form gradient reuses."""
    dist: Tensor
    sq: Tensor  # ‖x - y‖²
    alpha: Tensor | None  # 1 - c‖x‖² (None in Euclidean space)
    beta: Tensor | None  # 1 - c‖y‖²
    z: Tensor | None  # the arcosh argument of Eq. 1


def distance_parts(sq: Tensor, x2: Tensor, y2: Tensor, *, c: float) -> DistanceParts:
    """Distances from squared differences and squared norms (all broadcast together), in the
    arcosh form of Eq. 1."""
    alpha = (1 - c * x2).clamp_min(MIN_NORM)
    beta = (1 - c * y2).clamp_min(MIN_NORM)
    floor = 1.0 + _margin(ARCOSH_MARGIN, sq.dtype)
    z = (1 + 2 * c * sq / (alpha * beta)).clamp_min(floor)
    return DistanceParts(arcosh(z) / math.sqrt(c), sq, alpha, beta, z)


def distance_chain(grad_dist: Tensor, d: DistanceParts, *,
                   c: float) -> tuple[Tensor, Tensor, Tensor]:
    """The chain rule through ``distance_parts``: dL/d‖x-y‖², dL/d‖x‖², dL/d‖y‖² from dL/dd.
    The gradient in x is then 2(x - y)·first + 2x·second (in y: 2(y - x)·first + 2y·third)."""
    grad_z = grad_dist / (math.sqrt(c) * ((d.z - 1) * (d.z + 1)).sqrt())
    a = grad_z * 2 * c / (d.alpha * d.beta)
    # z = 1 + 2c·sq/(αβ) with α = 1 - c‖x‖², β = 1 - c‖y‖²: dz/d‖x‖² = 2c²·sq/(α²β)
    return a, a * d.sq * c / d.alpha, a * d.sq * c / d.beta


def squared_distance_grads(x: Tensor, y: Tensor, *, c: float) -> tuple[Tensor, Tensor, Tensor]:
    """d(x, y)² over the last dimension and its gradients in x and in y, in closed form.
    Finite where x = y, where both gradients are 0."""
    parts = distance_parts((x - y).pow(2).sum(-1), x.pow(2).sum(-1), y.pow(2).sum(-1), c=c)
    a, ax, by = distance_chain(2 * parts.dist, parts, c=c)
    grad_x = 2 * (a.unsqueeze(-1) * (x - y) + ax.unsqueeze(-1) * x)
    grad_y = 2 * (a.unsqueeze(-1) * (y - x) + by.unsqueeze(-1) * y)
    return parts.dist.pow(2), grad_x, grad_y


def rsgd_step(x: Tensor, grad: Tensor, lr: float, *, c: float,
              max_length: float | None = None) -> Tensor:
    """One Riemannian SGD step with the retraction of Nickel & Kiela (2017):
    x - lr · ∇ / λ_x², projected back inside (1/λ_x² = (1 - c‖x‖²)²/4 is the inverse metric).
    ``max_length`` clips each row's step to that length in the ball's metric (λ_x‖step‖)."""
    lam = lambda_x(x, c=c)
    step = lr * grad / lam.pow(2)
    if max_length is not None:
        step = step * (max_length / (lam * norm(step))).clamp_max(1.0)
    return project(x - step, c=c)


def dist0(x: Tensor, *, c: float, keepdim: bool = False) -> Tensor:
    """Distance from the origin, 2/√c · artanh(√c‖x‖)."""
    sqrt_c = math.sqrt(c)
    d = 2.0 / sqrt_c * artanh(sqrt_c * norm(x))
    return d if keepdim else d.squeeze(-1)


def mobius_matvec(weight: Tensor, x: Tensor, *, c: float) -> Tensor:
    """Möbius matrix-vector product W ⊗_c x = exp0(W log0(x)) (Ganea et al. 2018, Eq. 27),
    written in closed form: tanh(‖Wx‖/‖x‖ · artanh(√c‖x‖)) Wx / (√c‖Wx‖).

    weight: (out, in); x: (..., in) on the ball -> (..., out) on the ball.
    """
    sqrt_c = math.sqrt(c)
    mx = x @ weight.transpose(0, 1)
    x_norm = norm(x)
    mx_norm = norm(mx)
    scale = tanh(mx_norm / x_norm * artanh(sqrt_c * x_norm)) / (sqrt_c * mx_norm)
    return project(scale * mx, c=c)


def nearest_keys(x: Tensor, codebook: Tensor, *, c: float) -> Tensor:
    """(n, s) keys whose order along each row is that of d(x_i, codebook_j), for nearest-code
    search: ‖x - v‖² / (1 - c‖v‖²) (``distance_keys`` without ``across_rows``) as one matrix
    product of [x, ‖x‖², 1] with the codes' [-2v, 1, ‖v‖²] scaled by 1 / (1 - c‖v‖²). No pass
    over the (n, s) keys but the product: 1.3–1.8× faster. Not clamped at 0, so a code within
    rounding of x may get a key slightly below 0."""
    code_sq = codebook.pow(2).sum(-1, keepdim=True)  # (s, 1)
    scale = 1.0 / (1.0 - c * code_sq).clamp_min(MIN_NORM)
    ones = torch.ones_like(x[:, :1])
    rows = torch.cat([x, x.pow(2).sum(-1, keepdim=True), ones], 1)
    codes = torch.cat([-2 * codebook, torch.ones_like(code_sq), code_sq], 1).mul_(scale)
    return rows @ codes.transpose(0, 1)


def distance_keys(x: Tensor, codebook: Tensor, *, c: float, across_rows: bool = True) -> Tensor:
    """(n, s) keys that increase with d(x_i, codebook_j), from one matrix product:
    ‖x - v‖² / ((1 - c‖x‖²)(1 - c‖v‖²)) (Eq. 1's arcosh argument, less 1, over 2c). They rank
    paths of different points together (beam search). With ``across_rows=False`` they only rank
    the codes of each row (nearest search): the factor 1 / (1 - c‖x‖²), which cannot change a
    row's order, is left out. For a fixed x the arcosh argument is increasing in
    ‖x-v‖² / (1-c‖v‖²), so nearest search is as cheap as Euclidean search."""
    code_sq = codebook.pow(2).sum(-1)  # (s,)
    keys = squared_distance_matrix(x, codebook)  # ‖x - v‖²
    keys.mul_(1.0 / (1.0 - c * code_sq).clamp_min(MIN_NORM))
    if not across_rows:
        return keys
    return keys.div_((1.0 - c * x.pow(2).sum(-1, keepdim=True)).clamp_min(MIN_NORM))


def expmap(x: Tensor, v: Tensor, *, c: float) -> Tensor:
    """Tangent vector v at x -> point: x ⊕ tanh(√c λ_x‖v‖/2) v / (√c‖v‖)."""
    sqrt_c = math.sqrt(c)
    v_norm = norm(v)
    step = tanh(sqrt_c * lambda_x(x, c=c) * v_norm / 2) * v / (sqrt_c * v_norm)
    return project(mobius_add(x, step, c=c), c=c)


def logmap(x: Tensor, y: Tensor, *, c: float) -> Tensor:
    """Point y -> tangent vector at x: 2/(√c λ_x) artanh(√c‖(-x) ⊕ y‖) u/‖u‖, u = (-x) ⊕ y."""
    sqrt_c = math.sqrt(c)
    u = mobius_add(-x, y, c=c)
    u_norm = norm(u)
    return 2 / (sqrt_c * lambda_x(x, c=c)) * artanh(sqrt_c * u_norm) * u / u_norm


def einstein_midpoint(x: Tensor, groups: Tensor, count: int, *, c: float) -> Tensor:
    """Per group, the Einstein midpoint of the points x (n, d) labelled ``groups`` (n,): the
    Lorentz-factor weighted mean in the Klein model, mapped back to the ball. Groups with no
    point get the origin. A closed-form stand-in for the Fréchet mean (Ungar 2008)."""
    x2 = c * x.pow(2).sum(-1, keepdim=True)
    klein = 2 * x / (1 + x2)
    gamma = 1 / (1 - c * klein.pow(2).sum(-1, keepdim=True)).clamp_min(MIN_NORM).sqrt()
    sums = x.new_zeros(count, x.shape[1]).index_add_(0, groups, gamma * klein)
    weights = x.new_zeros(count, 1).index_add_(0, groups, gamma)
    mean = sums / weights.clamp_min(MIN_NORM)  # a convex combination: inside the Klein ball
    k2 = (c * mean.pow(2).sum(-1, keepdim=True)).clamp_max(1.0)
    return project(mean / (1 + (1 - k2).sqrt()), c=c)


def mlr_logits(x: Tensor, normals: Tensor, offsets: Tensor, *, c: float) -> Tensor:
    """Unidirectional hyperbolic MLR (Shimizu et al. 2021, Eq. 6 of the HyperVQ paper):
    v_k(x) = 2‖a_k‖/√c · asinh((2√c⟨x, â_k⟩ cosh(2√c r_k) - (1 + c‖x‖²) sinh(2√c r_k))
    / (1 - c‖x‖²)), i.e. 2‖a_k‖ times the signed distance from x to the hyperplane through
    q_k = exp0(r_k â_k) orthogonal to â_k. x: (n, d); normals a: (K, d); offsets r: (K,)
    -> (n, K), from one matrix product."""
    sqrt_c = math.sqrt(c)
    a_norm = norm(normals).squeeze(-1)  # (K,)
    twice = (2 * sqrt_c * offsets).clamp(-2 * TANH_LIMIT, 2 * TANH_LIMIT)
    cx2 = c * x.pow(2).sum(-1, keepdim=True)  # (n, 1)
    along = (x @ (normals / a_norm.unsqueeze(-1)).transpose(0, 1)) * (2 * sqrt_c)  # (n, K)
    inner = (along * torch.cosh(twice) - (1 + cx2) * torch.sinh(twice)) / (1 - cx2).clamp_min(MIN_NORM)
    return 2 * a_norm / sqrt_c * torch.asinh(inner)
