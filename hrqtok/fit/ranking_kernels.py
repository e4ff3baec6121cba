"""A compiled loop (numba) for ``contrastive.table_ranking_loss`` on the CPU: the softmax
ranking loss of a WordNet batch and its gradients, one group of pairs at a time, reading the
rows straight from the embedding table.

A batch of 512 pairs on all nouns is 16 groups of 32 pairs sharing 50 negatives: 25,600
distances. As tensor operations (three row gathers, batched products, the distance parts,
logsumexp, the softmax and the chain rule) that was 1.8–1.9 of a step's 4.4–4.5 ms: dozens
of calls over (16, 32, 50) arrays, each written to memory and read back. Here each pair's
distances, softmax and gradient rows are taken in one pass over rows held in the cache
(0.47–0.54 ms), with the formulas of ``softmax_ranking_loss`` and ``poincare.distance_parts``
/ ``distance_chain`` (the arcosh written as ``poincare.arcosh``). Two differences: ‖u − n‖² is
summed from the differences, not expanded as ‖u‖² + ‖n‖² − 2⟨u, n⟩, which loses digits when
u and n are close (the tensor path expands it to use a matrix product); and on the ball of
curvature 1 (the default) the softmax takes e^{−d} = 1 / (z + √(z² − 1)), a square root and a
division where a log and an exp were. ``tests/test_contrastive.py`` holds it to the tensor
path and to autograd.

Groups run on numba's threads (torch's thread count, as ``walk_kernels``); each writes only
its own rows, and the loss is summed over groups afterwards in order, so the result does not
depend on the thread count. numba's on-disk cache (``cache=True``) notices changes to this
file only: the helpers are written out here (after editing ``constants.py``, delete the
``__pycache__`` folders).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hrqtok.geometry.constants import MIN_NORM

JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@numba.njit(inline="always", **JIT)
def _distance(x, y, x2, y2, c, sqrt_c, flat, floor):
    """d(x, y), e^{−d(x, y)}, ‖x − y‖² and dd/d‖x − y‖², which turns dL/dd into
    ``distance_chain``'s first term. e^{−d} is NaN where it is not needed: it is computed only
    on the ball of curvature 1, where it is 1 / (z + √(z² − 1)) without a log or an exp, and
    at least 6e-32 (z < 1e31 inside the ball's margin), so sums of it need no shift."""
    sq = 0.0
    for j in range(x.shape[0]):
        diff = x[j] - y[j]
        sq += diff * diff
    if flat:
        dist = math.sqrt(max(sq, MIN_NORM * MIN_NORM))
        return dist, np.nan, sq, 1.0 / (2 * dist)
    alpha_beta = max(1 - c * x2, MIN_NORM) * max(1 - c * y2, MIN_NORM)
    z = max(1 + 2 * c * sq / alpha_beta, floor)
    w = z - 1
    root = math.sqrt(w * (z + 1))
    factor = 2 * c / (sqrt_c * root * alpha_beta)
    if c == 1.0:
        return np.nan, 1.0 / (z + root), sq, factor
    return math.log1p(w + root) / sqrt_c, np.nan, sq, factor


@numba.njit(**JIT)
def _group_loss(table, anchors, positives, negatives, masked, c, flat, floor,
                grad_anchors, grad_positives, grad_negatives):
    """One group: its summed loss; its rows of the three gradients are written."""
    size, count = anchors.shape[0], negatives.shape[0]
    dim = table.shape[1]
    sqrt_c = 1.0 if flat else math.sqrt(c)
    direct = not flat and c == 1.0  # e^{−d} straight from z (see _distance)
    rows = np.empty((count, dim))
    norms2, on_norms2 = np.empty(count), np.empty(count)
    for k in range(count):
        n = table[negatives[k]]
        norms2[k] = 0.0
        for j in range(dim):
            rows[k, j] = n[j]
            norms2[k] += n[j] * n[j]
        # dz/d‖n‖² over dz/d‖u − n‖² is ‖u − n‖²·c/(1 − c‖n‖²): its second factor
        on_norms2[k] = 0.0 if flat else c / max(1 - c * norms2[k], MIN_NORM)
    grad_negatives[:, :] = 0.0
    weight, sq, factor = np.empty(count), np.empty(count), np.empty(count)
    on_u = np.empty(dim)
    total = 0.0
    for i in range(size):
        u, v = table[anchors[i]], table[positives[i]]
        u2 = v2 = 0.0
        for j in range(dim):
            u2 += u[j] * u[j]
            v2 += v[j] * v[j]
        on_u2_sq = 0.0 if flat else c / max(1 - c * u2, MIN_NORM)
        on_v2_sq = 0.0 if flat else c / max(1 - c * v2, MIN_NORM)
        d_pos, e_pos, sq_pos, factor_pos = _distance(u, v, u2, v2, c, sqrt_c, flat, floor)
        # the softmax over the positive and the unmasked negatives: weight[k] ∝ e^{−d_k}
        if direct:
            norm = e_pos
            for k in range(count):
                _, e, sq[k], factor[k] = _distance(u, rows[k], u2, norms2[k], c, sqrt_c,
                                                   flat, floor)
                weight[k] = 0.0 if masked[i, k] else e
                norm += weight[k]
        else:  # shifted by the least distance, as logsumexp shifts by the largest logit
            least = d_pos
            for k in range(count):
                weight[k], _, sq[k], factor[k] = _distance(u, rows[k], u2, norms2[k], c,
                                                           sqrt_c, flat, floor)
                if not masked[i, k]:
                    least = min(least, weight[k])
            e_pos = math.exp(least - d_pos)
            norm = e_pos
            for k in range(count):
                weight[k] = 0.0 if masked[i, k] else math.exp(least - weight[k])
                norm += weight[k]
        total += math.log(norm / e_pos)  # −log(e^{−d_pos} / Σ e^{−d})
        # dL/dd: 1 − p for the positive, −p for each negative; then the chain rule
        a = (1 - e_pos / norm) * factor_pos
        on_u2 = a * (1 + sq_pos * on_u2_sq)
        on_v2 = a * (1 + sq_pos * on_v2_sq)
        for j in range(dim):
            on_u[j] = -2 * a * v[j]
        for k in range(count):
            a_k = -weight[k] / norm * factor[k]
            on_u2 += a_k * (1 + sq[k] * on_u2_sq)
            on_n2 = a_k * (1 + sq[k] * on_norms2[k])
            for j in range(dim):
                on_u[j] -= 2 * a_k * rows[k, j]
                grad_negatives[k, j] += 2 * (on_n2 * rows[k, j] - a_k * u[j])
        for j in range(dim):
            grad_anchors[i, j] = 2 * on_u2 * u[j] + on_u[j]
            grad_positives[i, j] = 2 * (on_v2 * v[j] - a * u[j])
    return total


@numba.njit(parallel=True, **JIT)
def ranking_loss_grads(table, anchors, positives, negatives, masked, c, flat, floor,
                       grad_anchors, grad_positives, grad_negatives):
    """table (n, d); anchors, positives (g, G) and negatives (g, K) row indices; masked
    (g, G, K) -> the loss summed over all pairs (returned), and the gradients (g, G, d),
    (g, G, d), (g, K, d) written into the arrays given."""
    groups = anchors.shape[0]
    losses = np.empty(groups)
    for g in numba.prange(groups):
        losses[g] = _group_loss(table, anchors[g], positives[g], negatives[g], masked[g], c,
                                flat, floor, grad_anchors[g], grad_positives[g],
                                grad_negatives[g])
    total = 0.0
    for g in range(groups):
        total += losses[g]
    return total
