"""The ball's hot operations with closed-form backward passes: what an HRQ-VAE step runs.

An item fit spends most of its time in a few elementwise chains: exp0 and log0 at every Möbius
layer, a Möbius sum with its projection for every bias and every residual. Differentiated by
autograd each costs tens of tiny tensor ops (74 for a projected Möbius sum, with its backward),
and at a batch of 128 rows the ops' calls, not their arithmetic, are the price. Here each chain
is one ``torch.autograd.Function`` whose forward runs exactly the ops of ``poincare`` (so values
are the same to the bit) and whose backward is the vector-Jacobian product worked out by hand:
- exp0, log0 and the projection scale each point by a function of its norm, x ↦ x·g(‖x‖); their
  gradient is G·g + x·(G·x)·g'(n)/n.
- x ⊕ y = (A x + B y) / D, with A = 1 + 2c⟨x,y⟩ + c‖y‖², B = 1 - c‖x‖²,
  D = 1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖², differentiated term by term (see ``_AddProject.backward``).
Without gradients the plain functions run. ``tests/test_geometry.py`` checks values and
gradients against autograd through ``poincare`` in float32 and float64, boundary cases included.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hrqtok.geometry import poincare
from hrqtok.geometry.constants import ARTANH_MARGIN, MIN_NORM, TANH_LIMIT
from hrqtok.geometry.constants import margin as _margin


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def _projection(x: Tensor, *, c: float) -> tuple[Tensor, Tensor, Tensor]:
    """``poincare.project``'s value and its radial parts: (out, n = ‖x‖, bound / n); the
    scale is min(1, bound / n)."""
    n = poincare.norm(x)
    ratio = poincare.max_norm(c=c, dtype=x.dtype) / n
    return x * ratio.clamp_max(1.0), n, ratio


def _projection_grad(grad: Tensor, x: Tensor, n: Tensor, ratio: Tensor) -> Tensor:
    """Back through x ↦ x·min(1, bound/‖x‖): the identity inside the bound, and on or outside
    it (clamp's gradient passes at equality) p·(G - x (G·x)/‖x‖²), G's tangential part scaled."""
    pulled = (ratio <= 1).to(grad.dtype)
    return ratio.clamp_max(1.0) * (grad - pulled * x * (_dot(grad, x) / n.pow(2)))


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
            out, _, ratio = _projection(y, c=c)
            p = ratio.clamp_max(1.0)
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
        return grad * g + x * (_dot(grad, x) * k), None, None


class _AddProject(torch.autograd.Function):
    """project(x ⊕ y); x or y may broadcast over the other's rows (a bias)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, c: float) -> Tensor:
        x2 = x.pow(2).sum(-1, keepdim=True)
        y2 = y.pow(2).sum(-1, keepdim=True)
        xy = (x * y).sum(-1, keepdim=True)
        inverse = 1 / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(MIN_NORM)
        a = 1 + 2 * c * xy + c * y2
        b = 1 - c * x2
        r = (a * inverse) * x + (b * inverse) * y
        out, n, ratio = _projection(r, c=c)
        ctx.c = c
        ctx.save_for_backward(x, y, x2, y2, a, b, inverse, r, n, ratio)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, x2, y2, a, b, inverse, r, n, ratio = ctx.saved_tensors
        c = ctx.c
        g = _projection_grad(grad, r, n, ratio) * inverse  # G/D
        gx, gy, gr = _dot(g, x), _dot(g, y), _dot(g, r)
        # dA = 2c(y·dx + x·dy) + 2c y·dy, dB = -2c x·dx,
        # dD = 2c(y·dx + x·dy) + 2c²(‖y‖² x·dx + ‖x‖² y·dy)
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = a * g + (2 * c) * ((gx - gr) * y - (gy + c * y2 * gr) * x)
            grad_x = grad_x.sum_to_size(x.shape)
        if ctx.needs_input_grad[1]:
            grad_y = b * g + (2 * c) * ((gx - gr) * x + (gx - c * x2 * gr) * y)
            grad_y = grad_y.sum_to_size(y.shape)
        return grad_x, grad_y, None


def expmap0(v: Tensor, *, c: float) -> Tensor:
    """``poincare.expmap0`` (projected), with a closed-form backward."""
    return _Radial.apply(v, c, "exp0") if _needs_grad(v) else poincare.expmap0(v, c=c)


def logmap0(y: Tensor, *, c: float) -> Tensor:
    """``poincare.logmap0``, with a closed-form backward."""
    return _Radial.apply(y, c, "log0") if _needs_grad(y) else poincare.logmap0(y, c=c)


def add(x: Tensor, y: Tensor, *, c: float) -> Tensor:
    """project(x ⊕ y), with a closed-form backward."""
    if _needs_grad(x, y):
        return _AddProject.apply(x, y, c)
    return poincare.project(poincare.mobius_add(x, y, c=c), c=c)


class _MobiusLayer(torch.autograd.Function):
    """exp0(u) ⊕ b, projected, then log0 of it (``tangent``) or not: a Möbius linear layer after
    its matrix product u = W v. Every step scales u or adds a multiple of b, so the output is
    α·u + β·b with per-row scalars α, β that depend on u and b only through ‖u‖², ⟨u, b⟩ and
    ‖b‖². The forward and backward passes work on those (n, 1) scalars, and only a handful of
    ops touch the full (n, d) rows; the backward pass is reverse mode over the scalar chain."""

    @staticmethod
    def forward(ctx, u: Tensor, b: Tensor, c: float, tangent: bool) -> Tensor:
        b = b.as_subclass(Tensor)  # a ManifoldParameter's ops go through __torch_function__
        sqrt_c = math.sqrt(c)
        bound = poincare.max_norm(c=c, dtype=u.dtype)
        u2 = u.pow(2).sum(-1, keepdim=True)
        ub = (u @ b).unsqueeze(-1)
        b2 = b.pow(2).sum()
        # exp0 with its projection: e = g_e·u
        n_u = u2.clamp_min(MIN_NORM**2).sqrt()
        s = sqrt_c * n_u
        t = poincare.tanh(s)
        g1 = t / s
        exp_cut = (bound / (g1 * n_u) <= 1).to(u.dtype)  # projected: g_e = bound / ‖u‖
        g_e = g1 + exp_cut * (bound / n_u - g1)
        # e ⊕ b = (A e + B b) / D = ka·u + kb·b
        e2, eb = g_e.pow(2) * u2, g_e * ub
        a = 1 + 2 * c * eb + c * b2
        d = (1 + 2 * c * eb + c**2 * e2 * b2).clamp_min(MIN_NORM)
        ka, kb = a * g_e / d, (1 - c * e2) / d
        r2 = (ka.pow(2) * u2 + 2 * ka * kb * ub + kb.pow(2) * b2).clamp_min(0)
        n_r = r2.clamp_min(MIN_NORM**2).sqrt()
        ratio = bound / n_r  # the sum's projection scales by p = min(1, ratio)
        p = ratio.clamp_max(1.0)
        if tangent:  # log0 of the projected sum, whose norm is m = n_r·p
            limit = 1.0 - _margin(ARTANH_MARGIN, u.dtype)
            s2 = sqrt_c * n_r * p
            h = poincare.artanh(s2) / s2
        else:
            s2 = h = torch.ones_like(p)
        alpha, beta = h * p * ka, h * p * kb
        ctx.c, ctx.tangent = c, tangent
        r_cut = (ratio <= 1).to(u.dtype)  # as clamp's gradient, which passes at equality
        ctx.save_for_backward(u, b, u2, ub, b2, n_u, s, t, g1, exp_cut, g_e, e2, eb, a, d, ka, kb,
                              r2, n_r, p, r_cut, s2, h, alpha, beta)
        if tangent:
            ctx.limit = limit
        return alpha * u + beta * b

    @staticmethod
    def backward(ctx, grad: Tensor):
        (u, b, u2, ub, b2, n_u, s, t, g1, exp_cut, g_e, e2, eb, a, d, ka, kb, r2, n_r, p, r_cut,
         s2, h, alpha, beta) = ctx.saved_tensors
        c, sqrt_c = ctx.c, math.sqrt(ctx.c)
        d_alpha = _dot(grad, u)
        d_beta = (grad @ b).unsqueeze(-1)
        # α = h·p·ka, β = h·p·kb
        d_ka, d_kb = d_alpha * h * p, d_beta * h * p
        d_hp = d_alpha * ka + d_beta * kb
        d_nr = -d_hp * h * r_cut * p / n_r  # p = bound / n_r where the projection cuts
        if ctx.tangent:  # h = artanh(s2)/s2 with s2 = √c·n_r·p (√c·bound where cut)
            inside = (s2 < ctx.limit).to(u.dtype)
            dh_ds2 = (inside / (1 - s2 * s2 * inside) - h) / s2
            d_nr = d_nr + d_hp * p * dh_ds2 * sqrt_c * (1 - r_cut)
        d_r2 = d_nr * (r2 > MIN_NORM**2).to(u.dtype) / (2 * n_r)
        # r2 = ka²·u2 + 2·ka·kb·ub + kb²·b2
        d_ka = d_ka + d_r2 * 2 * (ka * u2 + kb * ub)
        d_kb = d_kb + d_r2 * 2 * (ka * ub + kb * b2)
        d_u2 = d_r2 * ka.pow(2)
        d_ub = d_r2 * 2 * ka * kb
        d_b2 = d_r2 * kb.pow(2)
        # ka = A·g_e / D, kb = B / D with B = 1 - c·e2
        d_a = d_ka * g_e / d
        d_ge = d_ka * a / d
        d_d = -(d_ka * ka + d_kb * kb) / d
        d_e2 = -c * d_kb / d + d_d * c**2 * b2
        d_eb = 2 * c * (d_a + d_d)
        d_b2 = d_b2 + c * d_a + d_d * c**2 * e2
        # e2 = g_e²·u2, eb = g_e·ub
        d_ge = d_ge + d_e2 * 2 * g_e * u2 + d_eb * ub
        d_u2 = d_u2 + d_e2 * g_e.pow(2)
        d_ub = d_ub + d_eb * g_e
        # g_e = tanh(s)/s (d/dn: (sech² - g1)/n) or bound/n where exp0's projection cuts
        sech2 = (1 - t * t) * (s < TANH_LIMIT).to(u.dtype)
        dge_dn = (exp_cut * -g_e + (1 - exp_cut) * (sech2 - g1)) / n_u
        d_u2 = d_u2 + d_ge * dge_dn * (u2 > MIN_NORM**2).to(u.dtype) / (2 * n_u)
        grad_u = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_u = alpha * grad + (2 * d_u2) * u + d_ub * b
        if ctx.needs_input_grad[1]:
            grad_b = grad.transpose(0, 1) @ beta.squeeze(-1) + u.transpose(0, 1) @ d_ub.squeeze(-1)
            grad_b = grad_b + (2 * d_b2.sum()) * b
        return grad_u, grad_b, None, None


def mobius_layer(u: Tensor, b: Tensor, *, c: float, tangent: bool) -> Tensor:
    """project(exp0(u) ⊕ b) for u (n, d) and a bias b (d,) on the ball, or log0 of it with
    ``tangent``: a Möbius linear layer after its matrix product (exp0(W v) ⊕ b = (W ⊗ exp0(v))
    ⊕ b), in one step with a closed-form backward. Equal to the composition of ``poincare``'s
    functions to float rounding."""
    return _MobiusLayer.apply(u, b, c, tangent)
