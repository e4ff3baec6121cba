"""Residual quantizers: Euclidean RQ, hyperbolic HRQ (HRQ paper §3.1) and HyperVQ levels on
the ball (HyperVQ paper §4).

Every quantizer has one call shape: ``forward(x) -> QuantizeOutput(quantized, codes, loss)`` and
``decode_codes(codes)``, its exact inverse on the codebooks. The residual loop is shared; a
geometry only says how to find the nearest code, subtract a code from a residual, and add codes
back, and HyperVQ changes how a level chooses its code. The residual k-means tokenizers are
these quantizers with codebooks from ``fit_kmeans`` instead of training. ``build_quantizer`` is
the one place that picks a class from a config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import geoopt
import torch
from torch import Tensor, nn

from hrqtok import geometry
from hrqtok.config import ModelConfig
from hrqtok.kmeans import IterationFn, kmeans, kmeans_fit

INIT_SCALE = 1e-2  # codebooks start as small Gaussian noise; fit replaces them by k-means
BEAM_CHUNK = 4096  # items per beam-search chunk: (chunk × beam × codebook size) keys at a time
# HyperVQ: logit gaps start at this many units per mean squared code length of the level, so
# they span a few units at every level however small its residuals (Gumbel noise has unit
# scale); MLR logits grow with ‖a_k‖ times a distance.
MLR_SCALE = 5.0


class QuantizeOutput(NamedTuple):
    quantized: Tensor  # (n, dim) value of decode_codes(codes); straight-through gradient to x
    codes: Tensor  # (n, levels) int64
    loss: Tensor  # () codebook + alpha * commitment loss, summed over levels


class QuantizationGrads(NamedTuple):
    loss: Tensor  # () the value of forward()'s loss
    codes: Tensor  # (n, levels)
    grad_x: Tensor  # (n, dim) d loss / d x (the commitment terms)
    grad_codebooks: list[Tensor]  # per level (codebook_size, dim): d loss / d codebook


class ResidualDetails(NamedTuple):
    codes: Tensor  # (n, levels)
    residuals: list[Tensor]  # r_0 … r_{k-1}, each (n, dim): what level i quantized
    errors: list[Tensor]  # d(r_i, e_i) per level, each (n,)


def _plain(codebook: Tensor) -> Tensor:
    """A codebook's values as a plain tensor: geoopt's tensor subclass makes every operation
    on it go through __torch_function__, which doubles the cost of a search."""
    return codebook.detach().as_subclass(torch.Tensor)


def _squared(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """‖x‖² summed over dimensions, (weighted) mean over the batch."""
    squared = x.pow(2).sum(-1)
    return squared.mean() if weights is None else (squared * weights).sum() / weights.sum()


class ResidualQuantizer(nn.Module):
    """Euclidean residual quantization (RQ-VAE): r_{i+1} = r_i - e_i, y = Σ e_i."""

    c: float | None = None  # curvature of the ball; None in Euclidean space
    temperature: float | None = None  # sampling temperature of code choices; None: no sampling

    def __init__(self, *, levels: int, codebook_size: int, dim: int, commitment: float,
                 geodesic_loss: bool = False):
        super().__init__()
        self.commitment = commitment
        self.geodesic_loss = geodesic_loss
        self.sizes = [codebook_size] * levels  # codes per level
        self._make_codebooks(levels, codebook_size, dim)

    def _make_codebooks(self, levels: int, size: int, dim: int) -> None:
        self.codebooks = nn.ParameterList(
            [self._parameter(torch.randn(size, dim) * INIT_SCALE) for _ in range(levels)])

    def level_parameters(self, level: int) -> list[nn.Parameter]:
        """The parameters holding one level's codes (row k = code k): revival resets their
        optimiser state."""
        return [self.codebooks[level]]

    def _choose(self, level: int, residual: Tensor, codebook: Tensor) -> Tensor:
        """The code level ``level`` gives each residual: the nearest one."""
        return self._nearest(residual, codebook)

    @torch.no_grad()
    def set_codes(self, level: int, points: Tensor, index: Tensor | None = None) -> None:
        """Put the codes ``index`` (all when None) of ``level`` at ``points``."""
        target = self.codebooks[level]
        if index is None:
            target.copy_(self.constrain(points))
        else:
            target[index] = self.constrain(points)

    # --- geometry: Euclidean here, overridden on the ball -----------------------------------------
    def _parameter(self, data: Tensor) -> nn.Parameter:
        return nn.Parameter(data)

    def _nearest(self, residual: Tensor, codebook: Tensor) -> Tensor:
        return geometry.nearest_codes(residual, codebook)

    def _subtract(self, residual: Tensor, code: Tensor) -> Tensor:
        return residual - code

    def _add(self, code: Tensor, rest: Tensor) -> Tensor:
        return code + rest

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).norm(dim=-1)

    def _gap(self, residual: Tensor, code: Tensor, weights: Tensor | None) -> Tensor:
        """One loss term: ‖r - e‖² in coordinates (the RQ-VAE loss), or d(r, e)² with a
        geodesic loss, which on the ball keeps weight near the boundary where coordinates
        shrink (WordNet embeddings live there)."""
        if self.geodesic_loss:
            squared = self.distance(residual, code).pow(2)
            return squared.mean() if weights is None else (squared * weights).sum() / weights.sum()
        return _squared(residual - code, weights)

    def to_tangent(self, x: Tensor) -> Tensor:
        """Coordinates in which k-means and latent norms are computed."""
        return x

    def from_tangent(self, v: Tensor) -> Tensor:
        return v

    def constrain(self, x: Tensor) -> Tensor:
        """Keep a point in the latent space (a no-op in Euclidean space)."""
        return x

    # --- the algorithm ------------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return len(self.sizes)

    @property
    def codebook_size(self) -> int:
        return self.sizes[0]

    def forward(self, x: Tensor, weights: Tensor | None = None) -> QuantizeOutput:
        """x: (n, dim) latent -> QuantizeOutput; gradients reach the codebooks only via loss.
        ``weights`` (n,): the loss is a weighted mean over rows (a row standing for several)."""
        residual = x  # r_0 = x
        codes, chosen = [], []
        loss = x.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            code = self._choose(level, residual.detach(), _plain(codebook))  # t_i = argmin_j d(r_i, C_i[j])
            e = codebook[code]  # e_i = C_i[t_i]
            # codebook term pulls e_i to r_i; commitment term pulls the encoder to e_i
            loss = loss + self._gap(residual.detach(), e, weights)
            loss = loss + self.commitment * self._gap(residual, e.detach(), weights)
            codes.append(code)
            chosen.append(e.detach())
            residual = self._subtract(residual, e.detach())  # r_{i+1} = r_i ⊖ e_i
        y = self._combine(chosen)  # y = e_0 ⊕ (e_1 ⊕ (… ⊕ e_{k-1}))
        quantized = self.constrain(x + (y - x).detach())  # straight-through: dy/dx ≈ I
        return QuantizeOutput(quantized, torch.stack(codes, dim=-1), loss)

    @torch.no_grad()
    def loss_grads(self, x: Tensor, weights: Tensor | None = None) -> QuantizationGrads:
        """forward()'s loss and its gradients in closed form, without autograd: what a table of
        embeddings trained by hand (WordNet mode) needs, at a fraction of the cost.

        Left translation y -> a ⊕ y is an isometry (a shift in Euclidean space), so
        d(r_i, e_i) = d(x, p_i) with p_i = e_0 ⊕ (e_1 ⊕ (… ⊕ e_i)) the reconstruction from the
        first i + 1 codes: the commitment term's gradient in x is that of a distance to a fixed
        point, with no Jacobian of the residual chain. Needs a distance loss (geodesic on the
        ball); tests/test_quantizers.py checks it against autograd through forward()."""
        if self.c is not None and not self.geodesic_loss:
            raise ValueError("closed-form gradients need the geodesic quantization loss")
        share = (torch.full((len(x),), 1.0 / max(len(x), 1), dtype=x.dtype) if weights is None
                 else weights / weights.sum()).unsqueeze(-1)
        residual, codes, chosen, grads = x, [], [], []
        loss, grad_x = x.new_zeros(()), torch.zeros_like(x)
        for level, codebook in enumerate(self.codebooks):
            codebook = _plain(codebook)
            code = self._choose(level, residual, codebook)
            e = codebook[code]
            squared, _, grad_e = geometry.squared_distance_grads(residual, e, c=self.c)
            loss += (1 + self.commitment) * (share.squeeze(-1) * squared).sum()
            grads.append(torch.zeros_like(codebook).index_add_(0, code, share * grad_e))
            chosen.append(e)
            _, grad_prefix, _ = geometry.squared_distance_grads(x, self._combine(chosen), c=self.c)
            grad_x += self.commitment * share * grad_prefix
            codes.append(code)
            residual = self._subtract(residual, e)
        return QuantizationGrads(loss, torch.stack(codes, dim=-1), grad_x, grads)

    def _combine(self, vectors: list[Tensor]) -> Tensor:
        # Right-nested sum: with left subtraction it undoes the residual loop exactly (gyro
        # left cancellation a ⊕ ((-a) ⊕ b) = b); in Euclidean space any order gives Σ e_i.
        y = vectors[-1]
        for e in reversed(vectors[:-1]):
            y = self._add(e, y)
        return y

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes: (n, levels) -> (n, dim), the reconstruction y of forward()."""
        return self._combine([cb[codes[..., i]] for i, cb in enumerate(self.codebooks)])

    @torch.no_grad()
    def encode(self, x: Tensor, *, beam: int = 1) -> Tensor:
        """x: (n, dim) -> codes (n, levels), without losses. ``beam`` > 1 keeps that many
        partial code paths per item instead of the nearest code at each level (greedy)."""
        greedy = self.details(x).codes
        if beam <= 1 or not len(x):
            return greedy
        searched = torch.cat([self._beam_codes(chunk, beam) for chunk in x.split(BEAM_CHUNK)])
        # beam search may prune the greedy path; keep whichever reconstructs x better
        error = lambda codes: self.distance(x, self.decode_codes(codes))  # noqa: E731
        return torch.where((error(searched) < error(greedy)).unsqueeze(-1), searched, greedy)

    def _beam_codes(self, x: Tensor, beam: int) -> Tensor:
        """Beam search over residual paths. A path's score after codes e_0 … e_i is the total
        reconstruction error so far, d(x, e_0 ⊕ (… ⊕ e_i)), which by the isometry of left
        translation is d(r_i, e_i): the distance from the path's residual to its last code."""
        n = len(x)
        residual = x.unsqueeze(1)  # (n, paths, dim); one path to start with
        codes = x.new_zeros((n, 1, 0), dtype=torch.long)
        for codebook in self.codebooks:
            codebook = _plain(codebook)
            paths, size = residual.shape[1], len(codebook)
            keys = geometry.distance_keys(residual.reshape(n * paths, -1), codebook, c=self.c)
            _, flat = keys.reshape(n, paths * size).topk(min(beam, paths * size), dim=1, largest=False)
            parent, code = flat // size, flat % size
            rows = torch.arange(n).unsqueeze(1)
            codes = torch.cat([codes[rows, parent], code.unsqueeze(-1)], -1)
            residual = self._subtract(residual[rows, parent], codebook[code])
        return codes[:, 0]  # topk sorts: the first path has the smallest error

    @torch.no_grad()
    def details(self, x: Tensor) -> ResidualDetails:
        """Codes plus each level's residual and its distance to the chosen code."""
        residual, codes, residuals, errors = x, [], [], []
        for level, codebook in enumerate(self.codebooks):
            codebook = _plain(codebook)
            code = self._choose(level, residual, codebook)
            e = codebook[code]
            codes.append(code)
            residuals.append(residual)
            errors.append(self.distance(residual, e))
            residual = self._subtract(residual, e)
        return ResidualDetails(torch.stack(codes, dim=-1), residuals, errors)

    @torch.no_grad()
    def initialise(self, x: Tensor, *, iters: int, generator: torch.Generator) -> None:
        """k-means on each level's residuals, level by level (in the tangent space at 0 on the
        ball), so that no code starts dead (collapse paper, §5)."""
        residual = x
        for level, size in enumerate(self.sizes):
            centroids = kmeans(self.to_tangent(residual), size, iters=iters, generator=generator)
            self.set_codes(level, self.from_tangent(centroids))
            codebook = _plain(self.codebooks[level])
            residual = self._subtract(residual, codebook[self._choose(level, residual, codebook)])

    @torch.no_grad()
    def fit_kmeans(self, x: Tensor, *, iters: int, generator: torch.Generator,
                   centroid: str = "frechet",
                   progress: Callable[[int], IterationFn] | None = None) -> list[dict]:
        """Residual k-means: each level's codebook is k-means (k-means++ seeding) of the
        residuals the levels before it leave, in this quantizer's own geometry (hyperbolic
        distances and Fréchet / Einstein centres on the ball). No training: these are the
        rq-kmeans and hrq-kmeans tokenizers. ``progress(level)`` gives a per-iteration callback.
        Returns one summary per level."""
        residual, summaries = x, []
        for level, size in enumerate(self.sizes):
            fitted = kmeans_fit(residual, size, iters=iters, generator=generator, c=self.c,
                                centroid=centroid, progress=progress(level) if progress else None)
            self.set_codes(level, fitted.centroids)
            codebook = _plain(self.codebooks[level])
            residual = self._subtract(residual, codebook[self._choose(level, residual, codebook)])
            summaries.append({"level": level, "iterations": fitted.iterations,
                              "objective": fitted.objective})
        return summaries

    @torch.no_grad()
    def revive(self, level: int, dead: Tensor, replacements: Tensor) -> None:
        """Move the codes ``dead`` (indices) of ``level`` onto ``replacements`` (len(dead), dim)."""
        self.set_codes(level, replacements, dead)


class HyperbolicResidualQuantizer(ResidualQuantizer):
    """HRQ on the Poincaré ball: nearest code by hyperbolic distance, left Möbius subtraction
    r_{i+1} = (-e_i) ⊕ r_i, right-nested Möbius sum y = e_0 ⊕ (e_1 ⊕ (… ⊕ e_{k-1})), which is
    exact when the last residual is a code. Codebooks are geoopt ManifoldParameters."""

    def __init__(self, *, levels: int, codebook_size: int, dim: int, commitment: float, c: float,
                 geodesic_loss: bool = False):
        self.c = c
        super().__init__(levels=levels, codebook_size=codebook_size, dim=dim, commitment=commitment,
                         geodesic_loss=geodesic_loss)

    def _parameter(self, data: Tensor) -> nn.Parameter:
        return geoopt.ManifoldParameter(self.constrain(data), manifold=geometry.ball(self.c))

    def _nearest(self, residual: Tensor, codebook: Tensor) -> Tensor:
        return geometry.nearest_codes(residual, codebook, c=self.c)

    def _subtract(self, residual: Tensor, code: Tensor) -> Tensor:
        return geometry.project(geometry.mobius_add(-code, residual, c=self.c), c=self.c)

    def _add(self, code: Tensor, rest: Tensor) -> Tensor:
        return geometry.project(geometry.mobius_add(code, rest, c=self.c), c=self.c)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return geometry.dist(a, b, c=self.c)

    def to_tangent(self, x: Tensor) -> Tensor:
        return geometry.logmap0(x, c=self.c)

    def from_tangent(self, v: Tensor) -> Tensor:
        return geometry.expmap0(v, c=self.c)

    def constrain(self, x: Tensor) -> Tensor:
        return geometry.project(x, c=self.c)


class HyperVQResidualQuantizer(HyperbolicResidualQuantizer):
    """HyperVQ levels stacked as HRQ residual levels (HyperVQ paper §4; the "HRQ + HyperVQ"
    combination of the HRQ paper's conclusion). Level i holds a unidirectional hyperbolic MLR
    (normals a_k, offsets r_k); its code k is the MLR hyperplane's representative point
    q_k = exp0(r_k [a_k]), so log0 q_k = r_k·a_k/‖a_k‖ and there is no separate codebook
    matrix. A residual's code is argmax_k of the MLR logits; in training it is sampled with
    Gumbel-softmax at ``temperature`` (annealed by the training loop) and its one-hot choice
    passes gradients to the logits by straight-through. Residuals, reconstruction and the
    codebook / commitment loss are HRQ's (Möbius, exact when the last residual is a code)."""

    temperature: float | None = 1.0  # Gumbel-softmax τ of the next step; the loop anneals it

    def _make_codebooks(self, levels: int, size: int, dim: int) -> None:
        self.normals = nn.ParameterList([nn.Parameter(torch.randn(size, dim)) for _ in range(levels)])
        self.offsets = nn.ParameterList(
            [nn.Parameter(torch.randn(size) * INIT_SCALE) for _ in range(levels)])

    def level_parameters(self, level: int) -> list[nn.Parameter]:
        return [self.normals[level], self.offsets[level]]

    @property
    def codebooks(self) -> list[Tensor]:
        """Each level's code points q_k = exp0(r_k [a_k]), (size, dim), differentiable in a, r."""
        return [self.from_tangent(r.unsqueeze(-1) * a / geometry.norm(a))
                for a, r in zip(self.normals, self.offsets)]

    def logits(self, level: int, residual: Tensor) -> Tensor:
        """(n, size) unidirectional MLR logits of level ``level``."""
        return geometry.mlr_logits(residual, self.normals[level], self.offsets[level], c=self.c)

    def _choose(self, level: int, residual: Tensor, codebook: Tensor) -> Tensor:
        return self.logits(level, residual).argmax(dim=-1)

    @torch.no_grad()
    def set_codes(self, level: int, points: Tensor, index: Tensor | None = None) -> None:
        """Give the codes ``index`` (all when None) MLR parameters whose argmax partition is,
        to first order at the origin, the Voronoi partition of the centres ``points``: for a
        centre m, â = m/‖m‖, r = ‖m‖/2 (the hyperplane bisects the way to m, so the code point
        lies halfway) and ‖a‖ = β r, making logit gaps β times gaps in squared distance.
        β = MLR_SCALE / (mean squared tangent norm of the centres) when a whole level is set
        (k-means initialisation); a revived code takes the level's median β."""
        tangent = self.to_tangent(self.constrain(points))
        length = geometry.norm(tangent)
        normals, offsets = self.normals[level], self.offsets[level]
        if index is None:
            beta = MLR_SCALE / max(float(length.pow(2).mean()), geometry.MIN_NORM)
            index = slice(None)
        else:
            beta = float((geometry.norm(normals).squeeze(-1)
                          / offsets.abs().clamp_min(geometry.MIN_NORM)).median())
        normals[index] = tangent / length * (beta * length / 2)
        offsets[index] = length.squeeze(-1) / 2

    def forward(self, x: Tensor, weights: Tensor | None = None) -> QuantizeOutput:
        """Like HRQ's forward, with the code of each level drawn by Gumbel-softmax in training
        (argmax of the logits otherwise). The reconstruction y is built from the one-hot
        choices with straight-through gradients to the logits and the code points, and x
        passes to y by straight-through as in HRQ."""
        residual, codes, chosen = x, [], []
        loss = x.new_zeros(())
        for level, points in enumerate(self.codebooks):
            logits = self.logits(level, residual)
            if self.training:
                uniform = torch.rand_like(logits).clamp(geometry.MIN_NORM, 1 - geometry.MIN_NORM)
                soft = torch.softmax((logits - torch.log(-torch.log(uniform))) / self.temperature, -1)
                code = soft.argmax(dim=-1)  # = argmax(logits + g): τ only shapes the gradient
                hard = torch.nn.functional.one_hot(code, len(points)).to(soft.dtype)
                e_st = (hard - soft.detach() + soft) @ points  # value q_code; gradient via soft
            else:
                code = logits.argmax(dim=-1)
                e_st = points[code]
            e = points[code]
            loss = loss + self._gap(residual.detach(), e, weights)
            loss = loss + self.commitment * self._gap(residual, e.detach(), weights)
            codes.append(code)
            chosen.append(e_st)
            residual = self._subtract(residual, e.detach())
        y = self._combine(chosen)
        quantized = self.constrain(y + (x - x.detach()))  # value y; dy/dx ≈ I as in HRQ
        return QuantizeOutput(quantized, torch.stack(codes, dim=-1), loss)

    def loss_grads(self, x: Tensor, weights: Tensor | None = None) -> QuantizationGrads:
        raise ValueError("HyperVQ levels learn their code choice from a decoder's reconstruction "
                         "loss; they have no closed-form gradients")


def build_quantizer(config: ModelConfig) -> ResidualQuantizer:
    """The quantizer a model config asks for."""
    shape = dict(
        levels=config.levels,
        codebook_size=config.codebook_size,
        dim=config.latent_dim,
        commitment=config.commitment,
        geodesic_loss=config.quantization_loss == "geodesic",
    )
    if config.quantizer == "hypervq":
        return HyperVQResidualQuantizer(**shape, c=config.curvature)
    if config.hyperbolic:
        return HyperbolicResidualQuantizer(**shape, c=config.curvature)
    return ResidualQuantizer(**shape)
