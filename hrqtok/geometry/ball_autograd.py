"""The ball's hot operations with closed-form backward passes: what an HRQ-VAE step runs.

An item fit spends most of its time in a few elementwise chains: exp0 and log0 at every Möbius
layer, a Möbius sum with its projection for every bias and every residual. Differentiated by
autograd each costs tens of tiny tensor ops (74 for a projected Möbius sum, with its backward),
and at a batch of 128 rows the ops' calls, not their arithmetic, are the price. Here each chain
is one ``torch.autograd.Function`` with its vector-Jacobian product worked out by hand:
- exp0 and log0 scale each point by a function of its norm, x ↦ x·g(‖x‖); their gradient is
  G·g + x·(G·x)·g'(n)/n. Their forward runs ``poincare``'s ops, so values are the same to the
  bit.
- x ⊕ y = (A x + B y) / D, with A = 1 + 2c⟨x,y⟩ + c‖y‖², B = 1 - c‖x‖²,
  D = 1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖², and its projection are α·x + β·y with per-row scalars that
  depend on ‖x‖², ⟨x,y⟩, ‖y‖² alone; so is a whole Möbius layer after its matrix product
  (exp0, bias, projection, log0). Those run as a chain of (n, 1) columns, forward and in
  reverse mode (``_layer_scalars``, ``_layer_scalar_grads``), in NumPy on the CPU, where its
  ops cost a quarter of torch's; values are equal to rounding. A training step on the CPU runs
  each of them as one compiled loop over the rows instead (``ball_kernels``).
Without gradients the plain functions run. ``tests/test_ball_autograd.py`` checks values and
gradients against autograd through ``poincare`` in float32 and float64, boundary cases included,
and against finite differences.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from hrqtok.geometry import poincare
from hrqtok.geometry.columns import from_columns, row_dot, to_columns
from hrqtok.geometry.constants import ARTANH_MARGIN, MIN_NORM, TANH_LIMIT
from hrqtok.geometry.constants import margin as _margin

KERNEL_DTYPES = (torch.float32, torch.float64)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _is_bias(u: Tensor, b: Tensor) -> bool:
    """Whether b is one vector broadcast over u's rows (a layer's bias)."""
    return b.dim() == 1 and u.dim() == 2


def _dot_rows(a: Tensor, b: Tensor) -> Tensor:
    """⟨a_i, b_i⟩ per row, (n, 1); a matrix-vector product where b is a bias: one op instead
    of a full-size product and a sum."""
    return (a @ b).unsqueeze(-1) if _is_bias(a, b) else row_dot(a, b)


class _Radial(torch.autograd.Function):
    """x ↦ x·g(‖x‖) for exp0 (with its projection) or log0; saves g and k = g'(n)/n."""

    @staticmethod
    def forward(ctx, x: Tensor, c: float, kind: str) -> Tensor:
        sqrt_c = math.sqrt(c)
        n = poincare.norm(x)
        scaled = sqrt_c * n
        floored = (n <= MIN_NORM).to(x.dtype)  # the norm's floor: no gradient through it
        if kind == "exp0":
            t = poincare.tanh(scaled)
            g = t / scaled
            y = x * g
            ratio = poincare.max_norm(c=c, dtype=x.dtype) / poincare.norm(y)
            p = ratio.clamp_max(1.0)
            out = y * p  # poincare.project
            # d/dn tanh(√c n)/(√c n) = (sech² - g)/n, sech² zero where tanh is clamped
            sech2 = (1 - t * t) * (scaled < TANH_LIMIT).to(x.dtype)
            k = torch.where(ratio <= 1, -g * p, sech2 - g) / n.pow(2)
            g = g * p
        elif kind == "log0":
            limit = 1.0 - _margin(ARTANH_MARGIN, x.dtype)
            g = poincare.artanh(scaled) / scaled
            out = x * g
            # d/dn artanh(√c n)/(√c n) = (1/(1 - c n²) - g)/n, and -g/n where artanh is clamped
            inside = (scaled < limit).to(x.dtype)
            k = (inside / (1 - scaled * scaled * inside) - g) / n.pow(2)
        else:
            raise ValueError(f"unknown radial map {kind!r}")
        ctx.save_for_backward(x, g, k * (1 - floored))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, g, k = ctx.saved_tensors
        return grad * g + x * (row_dot(grad, x) * k), None, None


def expmap0(v: Tensor, *, c: float) -> Tensor:
    """``poincare.expmap0`` (projected), with a closed-form backward."""
    return _Radial.apply(v, c, "exp0") if _needs_grad(v) else poincare.expmap0(v, c=c)


def logmap0(y: Tensor, *, c: float) -> Tensor:
    """``poincare.logmap0``, with a closed-form backward."""
    return _Radial.apply(y, c, "log0") if _needs_grad(y) else poincare.logmap0(y, c=c)


def add(x: Tensor, y: Tensor, *, c: float) -> Tensor:
    """project(x ⊕ y), with a closed-form backward (values equal to rounding)."""
    if _needs_grad(x, y):
        return _Combination.apply(x, y, c, False, False, True)
    return poincare.project(poincare.mobius_add(x, y, c=c), c=c)


def _layer_scalars(xp, u2, ub, b2, *, c: float, bound: float, limit: float | None,
                   exp0: bool = True) -> dict:
    """The per-row scalars of project(exp0(u) ⊕ b) = ka·u + kb·b (without ``exp0``:
    project(u ⊕ b); then log0 when ``limit``, artanh's clamp, is given) from ‖u‖², ⟨u, b⟩,
    ‖b‖²; every intermediate the backward pass needs. Output = alpha·u + beta·b."""
    sqrt_c = math.sqrt(c)
    k = dict(u2=u2, ub=ub, b2=b2, exp0=exp0)
    if exp0:
        n_u = xp.sqrt(xp.maximum(u2, MIN_NORM**2))
        s = sqrt_c * n_u
        t = xp.tanh(xp.minimum(s, TANH_LIMIT))
        g1 = t / s
        exp_cut = xp.mask(bound / (g1 * n_u) <= 1, u2)  # exp0 projected: g_e = bound / ‖u‖
        g_e = g1 + exp_cut * (bound / n_u - g1)
        k.update(n_u=n_u, s=s, t=t, g1=g1, exp_cut=exp_cut)
        e2, eb = g_e * g_e * u2, g_e * ub
    else:
        g_e, e2, eb = 1.0, u2, ub
    # e ⊕ b = (A e + B b) / D with e = g_e·u
    a = 1 + 2 * c * eb + c * b2
    d = xp.maximum(1 + 2 * c * eb + c**2 * e2 * b2, MIN_NORM)
    ka, kb = a * g_e / d, (1 - c * e2) / d
    r2 = xp.maximum(ka * ka * u2 + 2 * ka * kb * ub + kb * kb * b2, 0.0)
    n_r = xp.sqrt(xp.maximum(r2, MIN_NORM**2))
    ratio = bound / n_r  # the sum's projection scales by p = min(1, ratio)
    p = xp.minimum(ratio, 1.0)
    r_cut = xp.mask(ratio <= 1, u2)  # as clamp's gradient, which passes at equality
    if limit is not None:  # log0 of the projected sum, whose norm is n_r·p
        s2 = sqrt_c * n_r * p
        h = xp.arctanh(xp.minimum(s2, limit)) / s2
    else:
        s2 = h = 1.0
    k.update(g_e=g_e, e2=e2, eb=eb, a=a, d=d, ka=ka, kb=kb, r2=r2, n_r=n_r, p=p, r_cut=r_cut,
             s2=s2, h=h, alpha=h * p * ka, beta=h * p * kb)
    return k


def _layer_scalar_grads(xp, k: dict, d_alpha, d_beta, *, c: float, limit: float | None):
    """Reverse mode through ``_layer_scalars``: dL/d‖u‖², dL/d⟨u, b⟩, dL/d‖b‖² per row from
    dL/dalpha and dL/dbeta."""
    sqrt_c, h, p = math.sqrt(c), k["h"], k["p"]
    ka, kb, u2, ub, b2, g_e = k["ka"], k["kb"], k["u2"], k["ub"], k["b2"], k["g_e"]
    # alpha = h·p·ka, beta = h·p·kb
    d_ka, d_kb = d_alpha * h * p, d_beta * h * p
    d_hp = d_alpha * ka + d_beta * kb
    d_nr = -d_hp * h * k["r_cut"] * p / k["n_r"]  # p = bound / n_r where the projection cuts
    if limit is not None:  # h = artanh(s2)/s2, s2 = √c·n_r·p (constant where cut)
        s2 = k["s2"]
        inside = xp.mask(s2 < limit, s2)
        dh_ds2 = (inside / (1 - s2 * s2 * inside) - h) / s2
        d_nr = d_nr + d_hp * p * dh_ds2 * sqrt_c * (1 - k["r_cut"])
    d_r2 = d_nr * xp.mask(k["r2"] > MIN_NORM**2, u2) / (2 * k["n_r"])
    # r2 = ka²·u2 + 2·ka·kb·ub + kb²·b2
    d_ka = d_ka + d_r2 * 2 * (ka * u2 + kb * ub)
    d_kb = d_kb + d_r2 * 2 * (ka * ub + kb * b2)
    d_u2 = d_r2 * ka * ka
    d_ub = d_r2 * 2 * ka * kb
    d_b2 = d_r2 * kb * kb
    # ka = A·g_e / D, kb = B / D with B = 1 - c·e2
    d = k["d"]
    d_a = d_ka * g_e / d
    d_ge = d_ka * k["a"] / d
    d_d = -(d_ka * ka + d_kb * kb) / d
    d_e2 = -c * d_kb / d + d_d * c**2 * b2
    d_eb = 2 * c * (d_a + d_d)
    d_b2 = d_b2 + c * d_a + d_d * c**2 * k["e2"]
    if not k["exp0"]:  # e = u
        return d_u2 + d_e2, d_ub + d_eb, d_b2
    # e2 = g_e²·u2, eb = g_e·ub
    d_ge = d_ge + d_e2 * 2 * g_e * u2 + d_eb * ub
    d_u2 = d_u2 + d_e2 * g_e * g_e
    d_ub = d_ub + d_eb * g_e
    # g_e = tanh(s)/s (d/dn: (sech² - g1)/n) or bound/n where exp0's projection cuts
    t, g1, n_u, cut = k["t"], k["g1"], k["n_u"], k["exp_cut"]
    sech2 = (1 - t * t) * xp.mask(k["s"] < TANH_LIMIT, t)
    dge_dn = (cut * -g_e + (1 - cut) * (sech2 - g1)) / n_u
    d_u2 = d_u2 + d_ge * dge_dn * xp.mask(u2 > MIN_NORM**2, u2) / (2 * n_u)
    return d_u2, d_ub, d_b2


COMPILED = True  # the CPU runs ball_kernels' loops where they apply (tests turn it off)


def _kernel_arrays(u: Tensor, b: Tensor):
    """(u, b) as C-ordered NumPy arrays for ``ball_kernels``, b as (n, d) or (1, d) for a bias;
    None where the loops do not apply (off the CPU, a dtype without them, other shapes)."""
    if not (COMPILED and u.device.type == "cpu" and u.dtype in KERNEL_DTYPES
            and b.dtype == u.dtype and u.dim() == 2
            and (b.shape == u.shape or (_is_bias(u, b) and len(b) == u.shape[1]))):
        return None
    b = b.unsqueeze(0) if b.dim() == 1 else b
    return (np.ascontiguousarray(u.detach().numpy()), np.ascontiguousarray(b.detach().numpy()))


class _Combination(torch.autograd.Function):
    """project(exp0(u) ⊕ b) (``exp0``), or project(u ⊕ b), then log0 of it (``tangent``) or
    not. Every step scales u or adds a multiple of b, so the output is α·u + β·b with per-row
    scalars α, β that depend on u and b only through ‖u‖², ⟨u, b⟩ and ‖b‖². The forward and
    backward passes work on those (n, 1) columns (``_layer_scalars``, ``_layer_scalar_grads``),
    and only a handful of ops touch the full (n, d) rows. Either input may broadcast over the
    other's rows (a layer's bias)."""

    @staticmethod
    def forward(ctx, u: Tensor, b: Tensor, c: float, exp0: bool, tangent: bool,
                training: bool) -> Tensor:
        # a ManifoldParameter's ops would go through __torch_function__
        u, b = u.as_subclass(Tensor), b.as_subclass(Tensor)
        limit = 1.0 - _margin(ARTANH_MARGIN, u.dtype) if tangent else None
        bound = poincare.max_norm(c=c, dtype=u.dtype)
        ctx.c, ctx.limit, ctx.bound, ctx.exp0 = c, limit, bound, exp0
        # ``training`` (gradients wanted) runs the compiled loops; inference keeps the column
        # chain, whose values it always had, and never imports numba (a second at start-up)
        arrays = _kernel_arrays(u, b) if training else None
        ctx.compiled, ctx.b_is_bias = arrays is not None, b.dim() == 1
        if ctx.compiled:  # one compiled loop over the rows (ball_kernels)
            from hrqtok.geometry import ball_kernels

            ctx.arrays = arrays  # NumPy views of u and b: the backward pass's inputs
            out = torch.empty_like(u)
            ball_kernels.combination_forward(*arrays, c, bound, limit or 1.0, exp0, tangent,
                                             out.numpy())
            return out
        u2, xp = to_columns(row_dot(u, u))
        ub, _ = to_columns(_dot_rows(u, b))
        b2, _ = to_columns(row_dot(b, b))
        with np.errstate(all="ignore"):  # a diverged batch's NaNs pass silently, as in torch
            scalars = _layer_scalars(xp, u2, ub, b2, c=c, limit=limit, exp0=exp0, bound=bound)
        alpha, beta = from_columns(scalars["alpha"]), from_columns(scalars["beta"])
        ctx.xp, ctx.scalars = xp, scalars
        ctx.save_for_backward(u, b, alpha, beta)
        return torch.addcmul(beta * b, alpha, u)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.compiled:
            from hrqtok.geometry import ball_kernels

            u, b = ctx.arrays
            grad_u = torch.empty(u.shape, dtype=grad.dtype)
            grad_b = torch.empty(b.shape, dtype=grad.dtype)
            ball_kernels.combination_backward(
                np.ascontiguousarray(grad.numpy()), u, b, ctx.c, ctx.bound, ctx.limit or 1.0,
                ctx.exp0, ctx.limit is not None, grad_u.numpy(), grad_b.numpy())
            return (grad_u, grad_b.view(b.shape[1:] if ctx.b_is_bias else b.shape), None, None,
                    None, None)
        u, b, alpha, beta = ctx.saved_tensors
        d_alpha, _ = to_columns(row_dot(grad, u))
        d_beta, _ = to_columns(_dot_rows(grad, b))
        with np.errstate(all="ignore"):
            grads = _layer_scalar_grads(ctx.xp, ctx.scalars, d_alpha, d_beta, c=ctx.c,
                                        limit=ctx.limit)
        d_u2, d_ub, d_b2 = (from_columns(g) for g in grads)
        grad_u = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.addcmul(torch.addcmul(alpha * grad, 2 * d_u2, u), d_ub, b)
            grad_u = grad_u.sum_to_size(u.shape)
        if ctx.needs_input_grad[1] and _is_bias(u, b):  # the sum over rows as products
            grad_b = beta.squeeze(-1) @ grad + d_ub.squeeze(-1) @ u + (2 * d_b2.sum()) * b
        elif ctx.needs_input_grad[1]:
            grad_b = (beta * grad + d_ub * u + (2 * d_b2) * b).sum_to_size(b.shape)
        return grad_u, grad_b, None, None, None, None


def mobius_layer(u: Tensor, b: Tensor, *, c: float, tangent: bool) -> Tensor:
    """project(exp0(u) ⊕ b) for u (n, d) and a bias b (d,) on the ball, or log0 of it with
    ``tangent``: a Möbius linear layer after its matrix product (exp0(W v) ⊕ b = (W ⊗ exp0(v))
    ⊕ b), in one step with a closed-form backward. Equal to the composition of ``poincare``'s
    functions to float rounding."""
    return _Combination.apply(u, b, c, True, tangent, _needs_grad(u, b))
