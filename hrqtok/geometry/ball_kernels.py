"""Compiled row loops (numba) for the projected Möbius sums of ``ball_autograd`` on the CPU.

A Möbius layer after its matrix product, and a residual's Möbius subtraction, are
α·u + β·b with per-row scalars α, β that depend on the row only through ‖u‖², ⟨u, b⟩ and ‖b‖²
(``ball_autograd``). Run as array operations, that costs tens of tiny NumPy and torch calls per
layer whatever its width: 520–820 µs for a layer's forward and backward at a batch of 128, the
same at width 32 as at 512, and most of what made a hyperbolic epoch slower than a Euclidean
one. Here each pass is one loop over the rows: the three inner products, the chain
of scalars in float64 (the same formulas as ``ball_autograd._layer_scalars`` and
``_layer_scalar_grads``, line by line), and the output row. The backward pass recomputes the
chain from the inner products instead of keeping ~25 columns from the forward.

They run the training steps, where batches are small and the calls were the cost; inference
(encode, decode, a fit's evaluation passes) keeps the column chain, whose values it always had,
and does not import numba (about a second at start-up). Outputs go into tensors torch
allocates: arrays allocated here came from other memory than torch's, often fresh pages at a
4,096-row batch (hundreds of page faults a batch), and an encode took a third more time.

``tests/test_ball_autograd.py`` checks these loops, as the NumPy path they replace, against
autograd through ``poincare``. Compiled code is cached on disk (numba's ``cache=True``), so
only the first run on a machine compiles (a few seconds); NaN and infinity pass through as in
NumPy (``error_model="numpy"``)."""

from __future__ import annotations

import math

import numba
import numpy as np

from hrqtok.geometry.constants import MIN_NORM, TANH_LIMIT

JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
FLOOR2 = MIN_NORM * MIN_NORM


@numba.njit(inline="always", **JIT)
def _min(a, b):
    """np.minimum's rule: NaN wins."""
    return a if (a < b or a != a) else b


@numba.njit(inline="always", **JIT)
def _max(a, b):
    return a if (a > b or a != a) else b


@numba.njit(inline="always", **JIT)
def _chain(u2, ub, b2, c, bound, limit, exp0, tangent):
    """(α, β) and what the reverse pass needs, for one row (``_layer_scalars``)."""
    sqrt_c = math.sqrt(c)
    n_u = s = t = g1 = exp_cut = 0.0
    g_e = 1.0
    e2, eb = u2, ub
    if exp0:
        n_u = math.sqrt(_max(u2, FLOOR2))
        s = sqrt_c * n_u
        t = math.tanh(_min(s, TANH_LIMIT))
        g1 = t / s
        exp_cut = 1.0 if bound / (g1 * n_u) <= 1 else 0.0
        g_e = g1 + exp_cut * (bound / n_u - g1)
        e2, eb = g_e * g_e * u2, g_e * ub
    a = 1 + 2 * c * eb + c * b2
    d = _max(1 + 2 * c * eb + c * c * e2 * b2, MIN_NORM)
    ka, kb = a * g_e / d, (1 - c * e2) / d
    r2 = _max(ka * ka * u2 + 2 * ka * kb * ub + kb * kb * b2, 0.0)
    n_r = math.sqrt(_max(r2, FLOOR2))
    ratio = bound / n_r
    p = _min(ratio, 1.0)
    r_cut = 1.0 if ratio <= 1 else 0.0
    s2 = h = 1.0
    if tangent:
        s2 = sqrt_c * n_r * p
        h = math.atanh(_min(s2, limit)) / s2
    return (h * p * ka, h * p * kb, n_u, s, t, g1, exp_cut, g_e, e2, a, d, ka, kb, r2, n_r, p,
            r_cut, s2, h)


@numba.njit(inline="always", **JIT)
def _chain_grads(u2, ub, b2, d_alpha, d_beta, c, bound, limit, exp0, tangent):
    """(α, β, dL/d‖u‖², dL/d⟨u, b⟩, dL/d‖b‖²) for one row (``_layer_scalar_grads``)."""
    (alpha, beta, n_u, s, t, g1, cut, g_e, e2, a, d, ka, kb, r2, n_r, p, r_cut, s2,
     h) = _chain(u2, ub, b2, c, bound, limit, exp0, tangent)
    sqrt_c = math.sqrt(c)
    d_ka, d_kb = d_alpha * h * p, d_beta * h * p
    d_hp = d_alpha * ka + d_beta * kb
    d_nr = -d_hp * h * r_cut * p / n_r
    if tangent:
        inside = 1.0 if s2 < limit else 0.0
        dh_ds2 = (inside / (1 - s2 * s2 * inside) - h) / s2
        d_nr = d_nr + d_hp * p * dh_ds2 * sqrt_c * (1 - r_cut)
    d_r2 = d_nr * (1.0 if r2 > FLOOR2 else 0.0) / (2 * n_r)
    d_ka = d_ka + d_r2 * 2 * (ka * u2 + kb * ub)
    d_kb = d_kb + d_r2 * 2 * (ka * ub + kb * b2)
    d_u2 = d_r2 * ka * ka
    d_ub = d_r2 * 2 * ka * kb
    d_b2 = d_r2 * kb * kb
    d_a = d_ka * g_e / d
    d_ge = d_ka * a / d
    d_d = -(d_ka * ka + d_kb * kb) / d
    d_e2 = -c * d_kb / d + d_d * c * c * b2
    d_eb = 2 * c * (d_a + d_d)
    d_b2 = d_b2 + c * d_a + d_d * c * c * e2
    if not exp0:
        return alpha, beta, d_u2 + d_e2, d_ub + d_eb, d_b2
    d_ge = d_ge + d_e2 * 2 * g_e * u2 + d_eb * ub
    d_u2 = d_u2 + d_e2 * g_e * g_e
    d_ub = d_ub + d_eb * g_e
    sech2 = (1 - t * t) * (1.0 if s < TANH_LIMIT else 0.0)
    dge_dn = (cut * -g_e + (1 - cut) * (sech2 - g1)) / n_u
    d_u2 = d_u2 + d_ge * dge_dn * (1.0 if u2 > FLOOR2 else 0.0) / (2 * n_u)
    return alpha, beta, d_u2, d_ub, d_b2


@numba.njit(inline="always", **JIT)
def _squared_norm(row):
    total = 0.0
    for value in row:
        total += float(value) * float(value)
    return total


@numba.njit(**JIT)
def combination_forward(u, b, c, bound, limit, exp0, tangent, out):
    """u (n, d); b (n, d), or (1, d) for a bias shared by the rows -> α·u + β·b into ``out``
    (n, d)."""
    n, dim = u.shape
    shared = b.shape[0] == 1
    b2_shared = _squared_norm(b[0]) if shared else 0.0
    for i in range(n):
        row = 0 if shared else i
        u2 = ub = 0.0
        b2 = b2_shared if shared else _squared_norm(b[i])
        for j in range(dim):
            uj = float(u[i, j])
            u2 += uj * uj
            ub += uj * float(b[row, j])
        chain = _chain(u2, ub, b2, c, bound, limit, exp0, tangent)
        alpha, beta = chain[0], chain[1]
        for j in range(dim):
            out[i, j] = alpha * u[i, j] + beta * b[row, j]


@numba.njit(**JIT)
def combination_backward(grad, u, b, c, bound, limit, exp0, tangent, grad_u, grad_b):
    """dL/du into ``grad_u`` (n, d) and dL/db into ``grad_b`` (b's shape, summed over the rows
    for a shared bias, in float64 before it is stored) from dL/dout."""
    n, dim = u.shape
    shared = b.shape[0] == 1
    grad_b64 = np.zeros(b.shape, np.float64)
    b2_shared = _squared_norm(b[0]) if shared else 0.0
    for i in range(n):
        row = 0 if shared else i
        u2 = ub = gu = gb = 0.0
        b2 = b2_shared if shared else _squared_norm(b[i])
        for j in range(dim):
            uj, bj, gj = float(u[i, j]), float(b[row, j]), float(grad[i, j])
            u2 += uj * uj
            ub += uj * bj
            gu += gj * uj
            gb += gj * bj
        alpha, beta, d_u2, d_ub, d_b2 = _chain_grads(u2, ub, b2, gu, gb, c, bound, limit, exp0,
                                                     tangent)
        for j in range(dim):
            uj, bj, gj = float(u[i, j]), float(b[row, j]), float(grad[i, j])
            grad_u[i, j] = alpha * gj + 2 * d_u2 * uj + d_ub * bj
            grad_b64[row, j] += beta * gj + d_ub * uj + 2 * d_b2 * bj
    for i in range(grad_b.shape[0]):
        for j in range(dim):
            grad_b[i, j] = grad_b64[i, j]


@numba.njit(**JIT)
def riemannian_adam_rows(point, grad, exp_avg, exp_avg_sq, c, lr, beta1, beta2, eps, step,
                         bound, out):
    """geoopt's RiemannianAdam step on rows of the ball in closed form, one loop per row
    (``fit.optimizers._poincare_adam_step``, term by term): updates the moments in place and
    writes the new points into ``out``. Every column of a row's ``exp_avg_sq`` holds its one
    value."""
    n, dim = point.shape
    bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
    for i in range(n):
        x2 = g2 = 0.0
        for j in range(dim):
            x2 += float(point[i, j]) * float(point[i, j])
            g2 += float(grad[i, j]) * float(grad[i, j])
        inv_lambda2 = _max(1 - c * x2, MIN_NORM) ** 2 / 4
        v = beta2 * float(exp_avg_sq[i, 0]) + (1 - beta2) * (g2 * inv_lambda2)
        for j in range(dim):
            exp_avg_sq[i, j] = v
        scale = lr / (bias1 * (math.sqrt(v / bias2) + eps))
        m2 = mx = mm = xm = 0.0
        for j in range(dim):
            m = beta1 * float(exp_avg[i, j]) + (1 - beta1) * (float(grad[i, j]) * inv_lambda2)
            exp_avg[i, j] = m
            x = float(point[i, j])
            moved = x - scale * m
            out[i, j] = moved
            m2 += moved * moved
            mx += moved * x
            mm += moved * m
            xm += x * m
        # the projection: norms floored at 1e-15, points beyond the bound scaled to it
        p = _min(bound / math.sqrt(_max(m2, FLOOR2)), 1.0)
        y2, yx, ym = m2 * p * p, mx * p, mm * p
        # gyr[y, -x] m = m + (2a·y - 2b·x) / d, then · λ_x / λ_y
        a = -c * c * ym * x2 - c * xm + 2 * c * c * yx * xm
        b = c * c * xm * y2 - c * ym
        d = _max(1 - 2 * c * yx + c * c * y2 * x2, MIN_NORM)
        ratio = _max(1 - c * y2, MIN_NORM) / _max(1 - c * x2, MIN_NORM)
        on_moved, on_point = ratio * 2 * a / d * p, -ratio * 2 * b / d
        for j in range(dim):
            moved = float(out[i, j])
            exp_avg[i, j] = (float(exp_avg[i, j]) * ratio + moved * on_moved
                             + float(point[i, j]) * on_point)
            out[i, j] = moved * p
