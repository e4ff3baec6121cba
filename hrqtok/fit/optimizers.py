"""Optimisers: Adam on the flat parameters and RiemannianAdam on the points of a manifold
(Möbius biases, codebooks on the ball).

geoopt's RiemannianAdam is Adam where the manifold is flat, but it updates one parameter at a
time in Python, about ten tensor passes each: 10 ms a step for the (H)RQ-VAE's 1.1 M weights
on 2 cores, a fifth of a hyperbolic epoch. torch's fused Adam makes the same update in one
pass (1 ms), so the flat weights, nearly all of the model, go to it (``SplitAdam``); only the
ball's points need the Riemannian step (the gradient rescaled to the metric, a retraction, the
moments transported). ``StackedRiemannianAdam`` makes that step once over all the points of
one shape (a quantizer's codebooks) instead of once per parameter, and on a Poincaré ball in
closed form (a few inner products per point and a chain of per-point scalars, not geoopt's
general stereographic operations): on the small codebooks of a WordNet fit the tensor passes
cost their call overhead, not their arithmetic."""

from __future__ import annotations

from collections.abc import Iterable

import geoopt
import numpy as np
import torch
from torch import Tensor

from hrqtok.geometry import poincare
from hrqtok.geometry.ball_autograd import KERNEL_DTYPES
from hrqtok.geometry.columns import from_columns, row_dot, to_columns
from hrqtok.geometry.constants import MIN_NORM


def on_a_curved_manifold(parameter: torch.nn.Parameter) -> bool:
    return isinstance(parameter, geoopt.ManifoldParameter) and not isinstance(
        parameter.manifold, geoopt.Euclidean)


class SplitAdam:
    """Adam for flat parameters, RiemannianAdam for curved ones, at one learning rate; the
    few calls the training loop and dead-code revival make (``step``, ``zero_grad``, and
    ``state``: every parameter's moments)."""

    def __init__(self, parameters: Iterable[torch.nn.Parameter], *, lr: float):
        parameters = list(parameters)
        flat = [p for p in parameters if not on_a_curved_manifold(p)]
        curved = [p for p in parameters if on_a_curved_manifold(p)]
        self.optimizers: list[torch.optim.Optimizer] = []
        if flat:
            self.optimizers.append(torch.optim.Adam(flat, lr=lr, fused=True))
        if curved:
            self.optimizers.append(StackedRiemannianAdam(curved, lr=lr))

    @property
    def state(self) -> dict:
        """Each parameter's state (its moments: the optimisers' own tensors, so changing them
        in place changes the next step). A merged dict, not a ChainMap: torch's states are
        defaultdicts, which would answer for every parameter, with an empty state."""
        return {p: state for optimizer in self.optimizers for p, state in optimizer.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def _stack_key(parameter: torch.nn.Parameter) -> tuple:
    """Parameters that can step as one stack: same manifold (by kind and curvature), dtype and
    device, and the same shape, or any length for vectors (padded with zeros, see ``_Stack``)."""
    manifold = getattr(parameter, "manifold", None)
    kind = (type(manifold).__name__, float(manifold.k)) if hasattr(manifold, "k") else (
        type(manifold).__name__, getattr(manifold, "ndim", None))
    shape = "vector" if parameter.dim() == 1 else tuple(parameter.shape)
    return kind, shape, parameter.dtype, parameter.device


class _Stack:
    """One stack's moments, (parameters, *shape) each, and each parameter's step count.
    Vectors of different lengths (the Möbius biases of an MLP) sit in rows as long as the
    longest, padded with zeros: every step on a point is made of norms, inner products and
    sums of its vectors scaled row by row, so zeros stay zero and leave a row's values as
    they are (to float rounding: a sum over more lanes may round differently)."""

    def __init__(self, parameters: list[torch.nn.Parameter]):
        self.parameters = parameters
        first = parameters[0]
        self.manifold = (first.manifold if isinstance(first, geoopt.ManifoldParameter)
                         else geoopt.Euclidean())
        lengths = [len(p) for p in parameters] if first.dim() == 1 else None
        self.lengths = lengths if lengths and len(set(lengths)) > 1 else None
        # a ball's points take the closed-form step (its curvature is fixed: read it once)
        self.curvature = (-float(self.manifold.k) if isinstance(self.manifold, geoopt.PoincareBall)
                          else None)
        shape = (max(lengths),) if self.lengths else tuple(first.shape)
        self.exp_avg = torch.zeros((len(parameters),) + shape, dtype=first.dtype,
                                   device=first.device)
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.steps = [0] * len(parameters)

    def row(self, tensor: Tensor, i: int) -> Tensor:
        """Member i's part of a stacked tensor (a view)."""
        return tensor[i, :self.lengths[i]] if self.lengths else tensor[i]

    def stacked(self, tensors: list[Tensor]) -> Tensor:
        if not self.lengths:
            return torch.stack(tensors)
        return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)


class StackedRiemannianAdam:
    """geoopt's RiemannianAdam (no weight decay, no AMSGrad, no stabilisation: its defaults)
    with the parameters of one manifold, shape and dtype stepped as one stack (vectors of any
    length together, see ``_Stack``). geoopt's operations on a point are row-wise, so each
    parameter gets the update geoopt would give it (tests/test_optimizers.py checks it): on a
    Poincaré ball by the closed form of ``_poincare_adam_step``, equal to rounding; on other
    manifolds by geoopt's own operations, to the bit. ``state[parameter]`` holds views of the
    stacked moments, so dead-code revival can reset a parameter's rows in place."""

    def __init__(self, parameters, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        stacks: dict[tuple, list[torch.nn.Parameter]] = {}
        for parameter in parameters:
            stacks.setdefault(_stack_key(parameter), []).append(parameter)
        self.stacks = [_Stack(members) for members in stacks.values()]

    @property
    def state(self) -> dict:
        """Like torch's optimiser state: the parameters stepped at least once."""
        return {p: {"step": stack.steps[i], "exp_avg": stack.row(stack.exp_avg, i),
                    "exp_avg_sq": stack.row(stack.exp_avg_sq, i)}
                for stack in self.stacks for i, p in enumerate(stack.parameters)
                if stack.steps[i]}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for stack in self.stacks:
            for parameter in stack.parameters:
                if parameter.grad is None:
                    continue
                if set_to_none:
                    parameter.grad = None
                else:
                    parameter.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for stack in self.stacks:
            ready = [i for i, p in enumerate(stack.parameters) if p.grad is not None]
            # members that stepped equally often share their bias corrections: one update;
            # otherwise (a member without gradient earlier) each steps alone, as in geoopt
            rounds = [ready] if len({stack.steps[i] for i in ready}) <= 1 else [[i] for i in ready]
            for members in rounds:
                if members:
                    self._update(stack, members)

    def _update(self, stack: _Stack, members: list[int]) -> None:
        parameters = [stack.parameters[i] for i in members]
        whole = len(members) == len(stack.parameters)
        index = torch.tensor(members, device=stack.exp_avg.device)
        exp_avg = stack.exp_avg if whole else stack.exp_avg[index]
        exp_avg_sq = stack.exp_avg_sq if whole else stack.exp_avg_sq[index]
        point = stack.stacked([_plain(p) for p in parameters])
        grad = stack.stacked([_plain(p.grad) for p in parameters])
        step = stack.steps[members[0]] + 1
        for i in members:
            stack.steps[i] = step
        manifold, (beta1, beta2) = stack.manifold, self.betas
        if stack.curvature is not None:
            new_point = _poincare_adam_step(point, grad, exp_avg, exp_avg_sq, c=stack.curvature,
                                            lr=self.lr, betas=self.betas, eps=self.eps, step=step)
        else:  # geoopt's RiemannianAdam.step, term by term
            grad = manifold.egrad2rgrad(point, grad)
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            exp_avg_sq.mul_(beta2).add_(manifold.component_inner(point, grad), alpha=1 - beta2)
            denom = exp_avg_sq.div(1 - beta2 ** step).sqrt_()
            direction = exp_avg.div(1 - beta1 ** step) / denom.add_(self.eps)
            new_point, transported = manifold.retr_transp(point, -self.lr * direction, exp_avg)
            exp_avg.copy_(transported)
        if not whole:
            stack.exp_avg[index] = exp_avg
            stack.exp_avg_sq[index] = exp_avg_sq
        for j, (parameter, i) in enumerate(zip(parameters, members)):
            parameter.copy_(new_point[j, :stack.lengths[i]] if stack.lengths else new_point[j])


COMPILED = True  # the CPU steps the ball's points by ball_kernels' loop (tests turn it off)


def _poincare_adam_step(point: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, *,
                        c: float, lr: float, betas: tuple[float, float], eps: float,
                        step: int) -> Tensor:
    """geoopt's RiemannianAdam step on the Poincaré ball of curvature c, in closed form (equal
    to rounding): updates the moments in place and returns the new points. With λ_x = 2 / (1 -
    c‖x‖²): the Riemannian gradient is g / λ_x², its squared length λ_x²‖g / λ_x²‖² = ‖g‖² / λ_x²
    (one number per point, which the second moment holds in every column); the retraction is
    y = project(x - s·m), s = lr / (bias₁ (√(v / bias₂) + ε)); and the first moment is carried
    to y by parallel transport, gyr[y, -x] m · λ_x / λ_y, with gyr[u, v] w = w + 2(A u + B v) / D
    from the rows' inner products. Every step is α·m + β·y + γ·x with per-row scalars: a
    handful of full-size ops and a chain of (n, 1) columns instead of geoopt's ~120 ops on a
    general stereographic model. On the CPU one compiled loop over the rows makes the same step
    (``ball_kernels.riemannian_adam_rows``)."""
    beta1, beta2 = betas
    tensors = (point, grad, exp_avg, exp_avg_sq)
    if (COMPILED and point.device.type == "cpu" and point.dtype in KERNEL_DTYPES
            and all(t.dtype == point.dtype and t.is_contiguous() for t in tensors)):
        from hrqtok.geometry import ball_kernels  # numba: imported where a fit first steps

        rows = [t.reshape(-1, point.shape[-1]).numpy() for t in tensors]  # views: moments in place
        moved = torch.empty_like(point)
        ball_kernels.riemannian_adam_rows(*rows, c, lr, beta1, beta2, eps, step,
                                          poincare.max_norm(c=c, dtype=point.dtype),
                                          moved.view(-1, point.shape[-1]).numpy())
        return moved
    x2, xp = to_columns(row_dot(point, point))
    g2, _ = to_columns(row_dot(grad, grad))
    with np.errstate(all="ignore"):
        inv_lambda2 = xp.maximum(1 - c * x2, MIN_NORM) ** 2 / 4
        exp_avg.mul_(beta1).add_(grad * from_columns(inv_lambda2), alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).add_(from_columns(g2 * inv_lambda2), alpha=1 - beta2)
        v, _ = to_columns(exp_avg_sq[..., :1].contiguous())
        scale = lr / ((1 - beta1 ** step) * (xp.sqrt(v / (1 - beta2 ** step)) + eps))
        moved = torch.addcmul(point, exp_avg, from_columns(-scale))
        m2, _ = to_columns(row_dot(moved, moved))
        mx, _ = to_columns(row_dot(moved, point))
        mm, _ = to_columns(row_dot(moved, exp_avg))
        xm, _ = to_columns(row_dot(point, exp_avg))
        # the projection of geoopt: norms floored at 1e-15, points beyond the bound scaled to it
        norm = xp.sqrt(xp.maximum(m2, MIN_NORM ** 2))
        bound = poincare.max_norm(c=c, dtype=point.dtype)
        p = xp.minimum(bound / norm, 1.0)
        y2, yx, ym = m2 * p * p, mx * p, mm * p
        # gyr[y, -x] m = m + (2a·y - 2b·x) / d, then · λ_x / λ_y
        a = -c * c * ym * x2 - c * xm + 2 * c * c * yx * xm
        b = c * c * xm * y2 - c * ym
        d = xp.maximum(1 - 2 * c * yx + c * c * y2 * x2, MIN_NORM)
        ratio = xp.maximum(1 - c * y2, MIN_NORM) / xp.maximum(1 - c * x2, MIN_NORM)
        on_moved, on_point = ratio * 2 * a / d * p, -ratio * 2 * b / d
    exp_avg.mul_(from_columns(ratio)).addcmul_(moved, from_columns(on_moved)).addcmul_(
        point, from_columns(on_point))
    return moved.mul_(from_columns(p))


def _plain(tensor: Tensor) -> Tensor:
    """A plain tensor view: geoopt's tensor subclass would route every stacked op through
    __torch_function__."""
    return tensor.detach().as_subclass(torch.Tensor)
