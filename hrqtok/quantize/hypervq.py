"""HyperVQ levels (HyperVQ paper §4; the "HRQ + HyperVQ" combination of the HRQ paper's
conclusion): a level is a unidirectional hyperbolic MLR over its codes, and training samples
the code with Gumbel-softmax.

Level i holds normals a_k and offsets r_k, and there is no separate codebook matrix: code k's
point is given by its MLR hyperplane H_k (through exp0(r_k [a_k]), orthogonal to a_k). Where
(``code_point``):
  "mirror"      the origin's mirror image in H_k, q_k = exp0(2 r_k [a_k]) (the default). When
                H_k bisects the way from the origin to a centre m, q_k = m: the code point is
                the centre of the cell its hyperplane bounds.
  "hyperplane"  the HyperVQ paper's representative point on H_k, q_k = exp0(r_k [a_k]). A
                residual level then removes only half of each cell's centre, and the deep
                levels spend their codes on the halves left over: 93-100 % collisions on
                clustered catalogues (README, "Robust tokens"). Models fitted before the
                choice existed load with it.
A residual's code is argmax_k of the MLR logits; in training it is drawn by Gumbel-softmax at
``temperature`` (annealed by the training loop) and its one-hot choice passes gradients to the
logits by straight-through. Residuals, reconstruction and the loss are the residual walk's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrqtok.geometry import MIN_NORM, Manifold, PoincareBall, norm

INIT_SCALE = 1e-2  # offsets start as small Gaussian noise; fit replaces them by k-means
# Logit gaps start at this many units per mean squared code length of the level, so they span
# a few units at every level however small its residuals (Gumbel noise has unit scale); MLR
# logits grow with ‖a_k‖ times a distance.
MLR_SCALE = 5.0
# where a code point lies along its normal, in units of the hyperplane's offset r_k (see above)
REACH = {"mirror": 2.0, "hyperplane": 1.0}  # keyed by config.CODE_POINTS


class MLRGumbel:
    differentiable = True  # y carries gradients to the logits (straight-through one-hot)
    # the refit after training starts at level 1: training leaves the MLR argmax cells off
    # their code points (12 % of tight-cluster items take a first code that is not their
    # nearest code point), and refitting the deep levels alone left 64 % collisions there
    # against 24 % for all levels
    refit_from = 0

    def __init__(self, manifold: Manifold, levels: int, size: int, dim: int, *,
                 code_point: str = "mirror"):
        if not isinstance(manifold, PoincareBall):
            raise ValueError(f"HyperVQ levels live on the Poincaré ball, not {manifold!r}")
        if code_point not in REACH:
            raise ValueError(f"code point must be one of {', '.join(REACH)}, got {code_point!r}")
        self.manifold = manifold
        self.reach = REACH[code_point]  # the code point's tangent length, in units of r_k
        self.normals = nn.ParameterList([nn.Parameter(torch.randn(size, dim)) for _ in range(levels)])
        self.offsets = nn.ParameterList(
            [nn.Parameter(torch.randn(size) * INIT_SCALE) for _ in range(levels)])
        self.temperature: float = 1.0  # Gumbel-softmax τ of the next step; the loop anneals it

    def parameter_lists(self) -> dict[str, nn.ParameterList]:
        return {"normals": self.normals, "offsets": self.offsets}

    def parameters_of(self, level: int) -> list[nn.Parameter]:
        return [self.normals[level], self.offsets[level]]

    def points(self, level: int) -> Tensor:
        """Code points q_k = exp0(reach · r_k [a_k]), (size, dim), differentiable in a and r."""
        a, r = self.normals[level], self.offsets[level]
        return self.manifold.expmap0((self.reach * r).unsqueeze(-1) * a / norm(a))

    def logits(self, level: int, residual: Tensor) -> Tensor:
        """(n, size) unidirectional MLR logits of level ``level``."""
        return self.manifold.mlr_logits(residual, self.normals[level], self.offsets[level])

    def choose(self, level: int, residual: Tensor, points: Tensor) -> Tensor:
        return self.logits(level, residual).argmax(dim=-1)

    def costs(self, level: int, residual: Tensor, points: Tensor) -> Tensor:
        """(n, size) negated MLR logits: what balanced assignment trades off."""
        return -self.logits(level, residual)

    def pick(self, level: int, residual: Tensor, points: Tensor, training: bool,
             choose) -> tuple[Tensor, Tensor, Tensor]:
        """In training the code is drawn by Gumbel-softmax; y is built from the one-hot choice,
        whose straight-through gradient reaches the logits and the code points. Otherwise the
        code is ``choose``'s (the MLR argmax, or balanced)."""
        if training:
            logits = self.logits(level, residual)
            uniform = torch.rand_like(logits).clamp(MIN_NORM, 1 - MIN_NORM)
            soft = torch.softmax((logits - torch.log(-torch.log(uniform))) / self.temperature, -1)
            code = soft.argmax(dim=-1)  # = argmax(logits + g): τ only shapes the gradient
            hard = torch.nn.functional.one_hot(code, len(points)).to(soft.dtype)
            for_y = (hard - soft.detach() + soft) @ points  # value q_code; gradient via soft
        else:
            code = choose(level, residual, points)
            for_y = points[code]
        return code, points[code], for_y

    @torch.no_grad()
    def set_codes(self, level: int, points: Tensor, index: Tensor | None = None) -> None:
        """Give the codes ``index`` (all when None) MLR parameters whose argmax partition is,
        to first order at the origin, the Voronoi partition of the centres ``points``: for a
        centre m, â = m/‖m‖, r = ‖m‖/2 (the hyperplane bisects the way to m: a "mirror" code
        point is m itself, a "hyperplane" one lies halfway) and ‖a‖ = β r, making logit gaps
        β times gaps in squared distance.
        β = MLR_SCALE / (mean squared tangent norm of the centres) when a whole level is set
        (k-means initialisation); a revived code takes the level's median β."""
        tangent = self.manifold.logmap0(self.manifold.project(points))
        length = norm(tangent)
        normals, offsets = self.normals[level], self.offsets[level]
        if index is None:
            beta = MLR_SCALE / max(float(length.pow(2).mean()), MIN_NORM)
            index = slice(None)
        else:
            beta = float((norm(normals).squeeze(-1) / offsets.abs().clamp_min(MIN_NORM)).median())
        normals[index] = tangent / length * (beta * length / 2)
        offsets[index] = length.squeeze(-1) / 2
