"""Residual quantization on a manifold: Euclidean RQ, hyperbolic HRQ (HRQ paper §3.1) and
HyperVQ levels on the ball (HyperVQ paper §4), as one algorithm.

Every quantizer has one call shape: ``forward(x) -> QuantizeOutput(quantized, codes, loss)``
and ``decode_codes(codes)``, its exact inverse on the codebooks. All of forward, encode, beam
search, details, the closed-form loss gradients and the k-means fits run the one residual walk
(``walk``):
    r_0 = x;  at level i: pick e_i for r_i;  r_{i+1} = r_i ⊖ e_i  (left subtraction);
    y = e_0 ⊕ (e_1 ⊕ (… ⊕ e_{k-1}))  (right-nested sum, exact when the last residual is a code).
The manifold says how to subtract, add and measure; a level choice (``nearest.NearestCode``,
``hypervq.MLRGumbel``) owns each level's parameters and says how a level picks its code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from hrqtok.geometry import Euclidean, Manifold, poincare
from hrqtok.geometry.ball_autograd import KERNEL_DTYPES
from hrqtok.geometry.constants import ARCOSH_MARGIN, margin
from hrqtok.quantize.balance import balanced_assignment
from hrqtok.quantize.kmeans import IterationFn, kmeans
from hrqtok.quantize.levels import plain

COMPILED = True  # loss_grads on the CPU runs walk_kernels' loop (tests turn it off)
BEAM_CHUNK = 4096  # items per beam-search chunk: (chunk × beam × codebook size) keys at a time

# step(level, r_i) -> (r_i as the walk continues from it, e_i)
Step = Callable[[int, Tensor], tuple[Tensor, Tensor]]


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


def _squared(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """‖x‖² summed over dimensions, (weighted) mean over the batch."""
    squared = x.pow(2).sum(-1)
    return squared.mean() if weights is None else (squared * weights).sum() / weights.sum()


class ResidualQuantizer(nn.Module):
    """k levels of ``codebook_size`` codes of dimension ``dim`` on ``manifold``; ``choice``
    (a level choice class, see ``levels``, built with ``choice_options``) makes and owns the levels' parameters. State-dict keys are the
    choice's parameter lists (``codebooks.0``, or ``normals.0`` and ``offsets.0``)."""

    def __init__(self, *, manifold: Manifold, choice: type, levels: int, codebook_size: int,
                 dim: int, commitment: float, geodesic_loss: bool = False,
                 balance: str = "none", choice_options: dict | None = None):
        super().__init__()
        self.manifold = manifold
        self.balance = balance  # "sinkhorn": codes assigned with uniform usage (see balance.py)
        self.commitment = commitment
        self.geodesic_loss = geodesic_loss
        self.sizes = [codebook_size] * levels  # codes per level
        self.choice = choice(manifold, levels, codebook_size, dim, **(choice_options or {}))
        for name, parameters in self.choice.parameter_lists().items():
            self.register_module(name, parameters)

    @property
    def levels(self) -> int:
        return len(self.sizes)

    @property
    def codebook_size(self) -> int:
        return self.sizes[0]

    def points(self, level: int) -> Tensor:
        """(codebook_size, dim) code points of ``level``, differentiable in its parameters."""
        return self.choice.points(level)

    def level_parameters(self, level: int) -> list[nn.Parameter]:
        """The parameters holding one level's codes (row k = code k): revival resets their
        optimiser state."""
        return self.choice.parameters_of(level)

    @torch.no_grad()
    def set_codes(self, level: int, points: Tensor, index: Tensor | None = None) -> None:
        """Put the codes ``index`` (all when None) of ``level`` at ``points``."""
        self.choice.set_codes(level, points, index)

    @torch.no_grad()
    def revive(self, level: int, dead: Tensor, replacements: Tensor) -> None:
        """Move the codes ``dead`` (indices) of ``level`` onto ``replacements`` (len(dead), dim)."""
        self.set_codes(level, replacements, dead)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return self.manifold.dist(a, b)

    def balanced(self, level: int) -> bool:
        """Whether ``level`` assigns its codes balanced: every level ("sinkhorn") or the last
        only ("sinkhorn-last", LC-Rec's choice: the upper levels keep their nearest codes)."""
        return (self.balance == "sinkhorn"
                or (self.balance == "sinkhorn-last" and level == self.levels - 1))

    def choose(self, level: int, residual: Tensor, points: Tensor) -> Tensor:
        """Each residual's code at ``level``: the level choice's, or balanced over the rows."""
        if self.balanced(level):
            return balanced_assignment(self.choice.costs(level, residual, points))
        return self.choice.choose(level, residual, points)

    # --- the walk -----------------------------------------------------------------------------
    def walk(self, x: Tensor, step: Step) -> Tensor:
        """r_0 = x; at each level i, ``step(i, r_i)`` picks the codes and returns the residual
        the walk continues from (r_i, or r_i regathered by beam search) and the code points
        e_i; then r_{i+1} = r_i ⊖ e_i. Returns the last residual."""
        residual = x
        for level in range(self.levels):
            residual, e = step(level, residual)
            residual = self.manifold.sub(residual, e)
        return residual

    def _nearest_step(self, codes: list[Tensor]) -> Step:
        """The inference step: each residual takes its level's code (appended to ``codes``)."""
        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            points = plain(self.points(level))
            code = self.choose(level, residual, points)
            codes.append(code)
            return residual, points[code]
        return step

    def combine(self, vectors: list[Tensor]) -> Tensor:
        """Right-nested sum e_0 ⊕ (e_1 ⊕ (… ⊕ e_{k-1})): with left subtraction it undoes the
        walk exactly (gyro left cancellation a ⊕ ((-a) ⊕ b) = b); in Euclidean space any order
        gives Σ e_i."""
        y = vectors[-1]
        for e in reversed(vectors[:-1]):
            y = self.manifold.add(e, y)
        return y

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes: (n, levels) -> (n, dim), the reconstruction y of forward()."""
        return self.combine([self.points(i)[codes[..., i]] for i in range(self.levels)])

    def _gap(self, residual: Tensor, code: Tensor, weights: Tensor | None) -> Tensor:
        """One loss term: ‖r - e‖² in coordinates (the RQ-VAE loss), or d(r, e)² with a
        geodesic loss, which on the ball keeps weight near the boundary where coordinates
        shrink (WordNet embeddings live there)."""
        if self.geodesic_loss:
            squared = self.distance(residual, code).pow(2)
            return squared.mean() if weights is None else (squared * weights).sum() / weights.sum()
        return _squared(residual - code, weights)

    # --- training ------------------------------------------------------------------------------
    def forward(self, x: Tensor, weights: Tensor | None = None) -> QuantizeOutput:
        """x: (n, dim) latent -> QuantizeOutput. ``weights`` (n,): the loss is a weighted mean
        over rows (a row standing for several). Gradients reach the codes through the loss, and
        the level choice's parameters through y when its choice is differentiable (HyperVQ)."""
        codes, chosen = [], []
        loss = x.new_zeros(())

        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            nonlocal loss
            # training steps learn with the level choice's own codes: balancing each minibatch
            # slowed HRQ's fit 5x and raised its collisions (README, "Balanced codes")
            choose = self.choice.choose if self.training else self.choose
            code, e, for_y = self.choice.pick(level, residual, self.points(level), self.training,
                                              choose)
            # codebook term pulls e_i to r_i; commitment term pulls the encoder to e_i
            loss = loss + self._gap(residual.detach(), e, weights)
            loss = loss + self.commitment * self._gap(residual, e.detach(), weights)
            codes.append(code)
            chosen.append(for_y)
            return residual, e.detach()

        self.walk(x, step)
        y = self.combine(chosen)
        if self.choice.differentiable:  # value y: its gradient reaches the choice; dy/dx ≈ I
            quantized = self.manifold.project(y + (x - x.detach()))
        else:  # straight-through: value y, dy/dx ≈ I
            quantized = self.manifold.project(x + (y - x).detach())
        return QuantizeOutput(quantized, torch.stack(codes, dim=-1), loss)

    @torch.no_grad()
    def loss_grads(self, x: Tensor, weights: Tensor | None = None) -> QuantizationGrads:
        """forward()'s loss and its gradients in closed form, without autograd: what a table of
        embeddings trained by hand (WordNet mode) needs, at a fraction of the cost.

        Left translation y -> a ⊕ y is an isometry (a shift in Euclidean space), so
        d(r_i, e_i) = d(x, p_i) with p_i = e_0 ⊕ (e_1 ⊕ (… ⊕ e_i)) the reconstruction from the
        first i + 1 codes: the commitment term's gradient in x is that of a distance to a fixed
        point, with no Jacobian of the residual chain. Needs a distance loss (geodesic on the
        ball) and a level choice that is not learnt through y; tests/test_quantizers.py checks
        it against autograd through forward()."""
        if self.choice.differentiable:
            raise ValueError("HyperVQ levels learn their code choice from a decoder's "
                             "reconstruction loss; they have no closed-form gradients")
        if not self.manifold.flat and not self.geodesic_loss:
            raise ValueError("closed-form gradients need the geodesic quantization loss")
        share = (x.new_full((len(x),), 1.0 / max(len(x), 1)) if weights is None
                 else weights / weights.sum())
        if COMPILED and x.device.type == "cpu" and x.dtype in KERNEL_DTYPES:
            return self._compiled_loss_grads(x, share)
        codes, residuals, chosen = [], [], []

        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            points = plain(self.points(level))
            code = self.choice.choose(level, residual, points)  # a training step, as forward()'s
            codes.append(code)
            residuals.append(residual)
            chosen.append(points[code])
            return residual, chosen[-1]

        self.walk(x, step)
        # every level's two distances in one closed-form call (the ops are tiny; their count is
        # the cost): d(r_i, e_i) for the codebook term, d(x, p_i) for the commitment term
        levels, n = self.levels, len(x)
        squared, grad_first, grad_second = self.manifold.squared_distance_grads(
            torch.cat(residuals + [x] * levels), torch.cat(chosen + self.prefixes(chosen)))
        loss = (1 + self.commitment) * (squared[:levels * n].view(levels, n) * share).sum()
        # codebook gradients of all levels in one buffer: level i's codes at rows i·s …
        offsets = torch.tensor(self.sizes).cumsum(0) - self.sizes[0]
        rows = (torch.stack(codes) + offsets.unsqueeze(-1)).reshape(-1)
        weighted = grad_second[:levels * n].view(levels, n, -1) * share.unsqueeze(-1)
        buffer = x.new_zeros((sum(self.sizes), x.shape[1])).index_add_(
            0, rows, weighted.reshape(levels * n, -1))
        grad_x = grad_first[levels * n:].view(levels, n, -1).sum(0)
        grad_x.mul_(self.commitment * share.unsqueeze(-1))
        return QuantizationGrads(loss, torch.stack(codes, dim=-1), grad_x,
                                 list(buffer.split(self.sizes)))

    def _compiled_loss_grads(self, x: Tensor, share: Tensor) -> QuantizationGrads:
        """``loss_grads`` as one compiled loop over the rows (``walk_kernels``), in tensors
        torch allocates."""
        from hrqtok.quantize import walk_kernels  # numba: imported where a WordNet fit steps

        codebooks = torch.stack([plain(self.points(i)) for i in range(self.levels)]).to(x.dtype)
        codes = torch.empty(len(x), self.levels, dtype=torch.int64)
        grad_x = torch.empty_like(x)
        buffer = x.new_empty((sum(self.sizes), x.shape[1]))
        c = 0.0 if self.manifold.flat else self.manifold.c
        bound = 0.0 if self.manifold.flat else poincare.max_norm(c=c, dtype=x.dtype)
        walk_kernels.set_threads(torch.get_num_threads())
        loss = walk_kernels.residual_loss_grads(
            x.contiguous().numpy(), share.to(torch.float64).numpy(), codebooks.numpy(), c,
            self.manifold.flat, bound, 1.0 + margin(ARCOSH_MARGIN, x.dtype), self.commitment,
            codes.numpy(), grad_x.numpy(), buffer.numpy())
        return QuantizationGrads(x.new_tensor(loss), codes, grad_x, list(buffer.split(self.sizes)))

    def prefixes(self, chosen: list[Tensor]) -> list[Tensor]:
        """p_i = e_0 ⊕ (e_1 ⊕ (… ⊕ e_i)) for every i: ``combine`` of each leading run of
        ``chosen``, built together from the right, k - 1 batched sums for k levels."""
        codes = torch.stack(chosen)
        tails = codes.clone()  # tails[i]: after step t, e_{i-t} ⊕ (… ⊕ e_i) for i ≥ t
        for t in range(1, len(chosen)):
            # one more code on the left of each tail: a code, not another tail, whose codes
            # the longer tails already hold (regrouping them was right only up to 3 levels)
            tails[t:] = self.manifold.add(codes[:-t], tails[t:])
        return list(tails.unbind(0))

    # --- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def details(self, x: Tensor) -> ResidualDetails:
        """Codes plus each level's residual and its distance to the chosen code."""
        codes, residuals, errors = [], [], []
        nearest = self._nearest_step(codes)

        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            residual, e = nearest(level, residual)
            residuals.append(residual)
            errors.append(self.manifold.dist(residual, e))
            return residual, e

        self.walk(x, step)
        return ResidualDetails(torch.stack(codes, dim=-1), residuals, errors)

    @torch.no_grad()
    def encode(self, x: Tensor, *, beam: int = 1) -> Tensor:
        """x: (n, dim) -> codes (n, levels), without losses. ``beam`` > 1 keeps that many
        partial code paths per item instead of the nearest code at each level (greedy)."""
        greedy = self.details(x).codes
        if beam <= 1 or not len(x):
            return greedy
        if self.balance != "none":
            raise ValueError("beam search ranks each item's own paths; it cannot keep a "
                             "balanced assignment: encode without --beam")
        searched = torch.cat([self._beam_codes(chunk, beam) for chunk in x.split(BEAM_CHUNK)])
        # beam search may prune the greedy path; keep whichever reconstructs x better
        error = lambda codes: self.distance(x, self.decode_codes(codes))  # noqa: E731
        return torch.where((error(searched) < error(greedy)).unsqueeze(-1), searched, greedy)

    def _beam_codes(self, x: Tensor, beam: int) -> Tensor:
        """Beam search over residual paths. A path's score after codes e_0 … e_i is the total
        reconstruction error so far, d(x, e_0 ⊕ (… ⊕ e_i)), which by the isometry of left
        translation is d(r_i, e_i): the distance from the path's residual to its last code."""
        n = len(x)
        paths = x.new_zeros((n, 1, 0), dtype=torch.long)  # codes of each path; one to start

        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            nonlocal paths
            points = plain(self.points(level))
            width, size = residual.shape[1], len(points)
            keys = self.manifold.distance_keys(residual.reshape(n * width, -1), points)
            _, flat = keys.reshape(n, width * size).topk(min(beam, width * size), dim=1,
                                                         largest=False)
            parent, code = flat // size, flat % size
            rows = torch.arange(n, device=residual.device).unsqueeze(1)
            paths = torch.cat([paths[rows, parent], code.unsqueeze(-1)], -1)
            return residual[rows, parent], points[code]

        self.walk(x.unsqueeze(1), step)  # residuals (n, paths, dim)
        return paths[:, 0]  # topk sorts: the first path has the smallest error

    # --- codebooks from data ---------------------------------------------------------------------
    @torch.no_grad()
    def initialise(self, x: Tensor, *, iters: int, generator: torch.Generator,
                   balanced_deep: bool = False, from_level: int = 0) -> None:
        """k-means on each level's residuals, level by level (in the tangent space at 0 on the
        ball), so that no code starts dead (collapse paper, §5). ``balanced_deep``: the levels
        after the first run balanced k-means (see ``fit_kmeans``). ``from_level``: the levels
        before it keep their codes (a refit of the deep levels on a trained encoder)."""
        nearest = self._nearest_step([])
        flat = Euclidean()

        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            if level >= from_level:
                tangent = self.manifold.logmap0(residual)
                centroids = kmeans(tangent, self.sizes[level], manifold=flat, iters=iters,
                                   generator=generator,
                                   balanced=balanced_deep and level > 0).centroids
                self.set_codes(level, self.manifold.expmap0(centroids))
            return nearest(level, residual)

        self.walk(x, step)

    @torch.no_grad()
    def fit_kmeans(self, x: Tensor, *, iters: int, generator: torch.Generator,
                   centroid: str = "frechet", balanced_deep: bool = False,
                   progress: Callable[[int], IterationFn] | None = None) -> list[dict]:
        """Residual k-means: each level's codebook is k-means (k-means++ seeding) of the
        residuals the levels before it leave, in this quantizer's own geometry (hyperbolic
        distances and Fréchet / Einstein centres on the ball). No training: these are the
        rq-kmeans and hrq-kmeans tokenizers. ``progress(level)`` gives a per-iteration callback.
        Returns one summary per level.

        ``balanced_deep``: the levels after the first fit their codes by balanced k-means
        (Lloyd steps whose assignments have uniform cluster sizes); items still take their
        nearest code. Deep residuals are close to isotropic noise, where plain k-means lets
        the centre nearest the mean take most points (perplexity 6 of 256 at level 3 on the
        sample glosses); the first level keeps the data's own, unequal clusters."""
        nearest = self._nearest_step([])
        summaries = []

        def step(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
            fitted = kmeans(residual, self.sizes[level], manifold=self.manifold, iters=iters,
                            generator=generator, centroid=centroid,
                            progress=progress(level) if progress else None,
                            balanced=self.balanced(level) or (balanced_deep and level > 0))
            self.set_codes(level, fitted.centroids)
            summaries.append({"level": level, "iterations": fitted.iterations,
                              "objective": fitted.objective})
            return nearest(level, residual)

        self.walk(x, step)
        return summaries
