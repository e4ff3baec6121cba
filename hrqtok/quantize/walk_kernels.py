"""A compiled loop over the rows (numba) for ``ResidualQuantizer.loss_grads`` on the CPU: the
(H)RQ loss of a WordNet training step and its gradients, one row's whole residual walk at a
time.

A WordNet step quantizes the 710–740 distinct nodes of a batch of 512 pairs at 10 dimensions
and 3 × 256 codes. As tensor operations that is 357 torch calls (torch.profiler's top-level
ops) and more NumPy ones (three searches, three subtractions, the prefixes, the closed-form
distance gradients and their scatter), each costing more than its arithmetic: 3.2 of a step's
8.7 ms on all nouns. Here one loop walks each row:
at each level the nearest code's key from the same terms as ``poincare.nearest_keys``
(‖r‖² − 2⟨r, v⟩ + ‖v‖², scaled by 1 / (1 − c‖v‖²) on the ball), the first least key taken as
``row_argmin`` takes it, d(r_i, e_i)² and its gradient in e_i (``squared_distance_grads``),
the next residual (−e_i) ⊕ r_i projected as ``PoincareBall.sub`` projects it, and last the
prefixes p_i = e_0 ⊕ (e_1 ⊕ (… ⊕ e_i)) and the gradient of d(x, p_i)² in x. Sums run in
float64; the values equal the tensor path's to rounding, and the codes are the same but where
two keys tie to rounding. ``tests/test_quantizers.py`` runs the closed-form checks on both.

Only the training step calls it (nothing else needs these gradients), so inference never
imports numba. Compiled code is cached on disk (``cache=True``). numba's cache notices changes
to this file only, not to the constants or helpers it takes from other files, so the Möbius sum
and the distance are written out here rather than taken from ``ball_kernels`` (after editing
``constants.py``, delete the ``__pycache__`` folders).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hrqtok.geometry.constants import MIN_NORM

JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
FLOOR2 = MIN_NORM * MIN_NORM
BLOCK = 64  # rows per block of the parallel loop


@numba.njit(inline="always", **JIT)
def _dot(a, b):
    total = 0.0
    for j in range(a.shape[0]):
        total += a[j] * b[j]
    return total


@numba.njit(inline="always", **JIT)
def _project(row, bound):
    """``poincare.project`` of one row, in place."""
    norm = math.sqrt(max(_dot(row, row), FLOOR2))
    scale = bound / norm
    if scale < 1.0:
        for j in range(row.shape[0]):
            row[j] *= scale


@numba.njit(inline="always", **JIT)
def _add(a, b, c, flat, bound, out):
    """project(a ⊕ b) into ``out`` (``poincare.mobius_add``; a + b when ``flat``)."""
    if flat:
        for j in range(a.shape[0]):
            out[j] = a[j] + b[j]
        return
    a2, b2, ab = _dot(a, a), _dot(b, b), _dot(a, b)
    inverse = 1.0 / max(1 + 2 * c * ab + c * c * a2 * b2, MIN_NORM)
    on_a, on_b = (1 + 2 * c * ab + c * b2) * inverse, (1 - c * a2) * inverse
    for j in range(a.shape[0]):
        out[j] = on_a * a[j] + on_b * b[j]
    _project(out, bound)


@numba.njit(inline="always", **JIT)
def _squared_distance_grads(x, y, c, flat, floor):
    """d(x, y)² and the scalars (a, ax, by) of its gradients, 2(a(x − y) + ax·x) in x and
    2(a(y − x) + by·y) in y (``poincare.squared_distance_grads``)."""
    sq = 0.0
    for j in range(x.shape[0]):
        diff = x[j] - y[j]
        sq += diff * diff
    if flat:
        return sq, 1.0, 0.0, 0.0
    sqrt_c = math.sqrt(c)
    alpha = max(1 - c * _dot(x, x), MIN_NORM)
    beta = max(1 - c * _dot(y, y), MIN_NORM)
    z = max(1 + 2 * c * sq / (alpha * beta), floor)
    w = z - 1
    dist = math.log1p(w + math.sqrt(w) * math.sqrt(z + 1)) / sqrt_c
    grad_z = 2 * dist / (sqrt_c * math.sqrt(w * (z + 1)))
    a = grad_z * 2 * c / (alpha * beta)
    return dist * dist, a, a * sq * c / alpha, a * sq * c / beta


@numba.njit(inline="always", **JIT)
def _first_least(keys):
    """The index of the first least key, or of the first NaN where there is one
    (``row_argmin``'s rule): the least value first, a loop that vectorises, then its index."""
    least, nan = np.inf, False
    for k in range(keys.shape[0]):
        least = min(least, keys[k])
        nan |= keys[k] != keys[k]
    for k in range(keys.shape[0]):
        if (keys[k] != keys[k]) if nan else (keys[k] == least):
            return k
    return 0


@numba.njit(**JIT)
def _code_terms(codebooks, c, flat):
    """Each level's keys as one product of [r, ‖r‖², 1] with these rows, codes along the last
    axis so that a row's keys vectorise: [-2v, 1, ‖v‖²] scaled by 1 / (1 - c‖v‖²)."""
    levels, size, dim = codebooks.shape
    terms = np.empty((levels, dim + 2, size))
    for level in range(levels):
        for k in range(size):
            v = codebooks[level, k]
            v2 = _dot(v, v)
            scale = 1.0 if flat else 1.0 / max(1 - c * v2, MIN_NORM)
            for j in range(dim):
                terms[level, j, k] = -2 * v[j] * scale
            terms[level, dim, k] = 0.0 if flat else scale  # a row's constant: no order change
            terms[level, dim + 1, k] = v2 * scale
    return terms


@numba.njit(**JIT)
def _walk_rows(x, share, codebooks, terms, c, flat, bound, floor, commitment, first, last,
               codes, losses, code_grads, grad_x):
    """Rows first … last - 1: codes, each row's weighted d(r_i, e_i)² summed over levels,
    each level's gradient in e_i (n, levels, d) and dL/dx."""
    levels, size, dim = codebooks.shape
    chosen = np.empty((levels, dim))
    residual, moved, prefix = np.empty(dim), np.empty(dim), np.empty(dim)
    point, gradient, keys = np.empty(dim), np.empty(dim), np.empty(size)
    for i in range(first, last):
        weight = share[i]
        losses[i] = 0.0
        for j in range(dim):
            residual[j] = x[i, j]
        for level in range(levels):
            r2 = _dot(residual, residual)
            constant, on_r2 = terms[level, dim + 1], terms[level, dim]
            for k in range(size):
                keys[k] = constant[k] + r2 * on_r2[k]
            for j in range(dim):
                rj, on_rj = residual[j], terms[level, j]
                for k in range(size):
                    keys[k] += rj * on_rj[k]
            codes[i, level] = best = _first_least(keys)
            e = codebooks[level, best]
            for j in range(dim):
                chosen[level, j] = e[j]
            # the codebook term d(r_i, e_i)²: its gradient in e_i
            d2, a, _, by = _squared_distance_grads(residual, chosen[level], c, flat, floor)
            losses[i] += weight * d2
            for j in range(dim):
                code_grads[i, level, j] = weight * 2 * (a * (e[j] - residual[j]) + by * e[j])
            # r_{i+1} = (-e_i) ⊕ r_i
            for j in range(dim):
                prefix[j] = -e[j]
            _add(prefix, residual, c, flat, bound, moved)
            residual, moved = moved, residual
        # the commitment terms d(x, p_i)², p_i = e_0 ⊕ (e_1 ⊕ (… ⊕ e_i)), in x
        for j in range(dim):
            point[j] = x[i, j]
            gradient[j] = 0.0
        for level in range(levels):
            for j in range(dim):
                prefix[j] = chosen[level, j]
            for outer in range(level - 1, -1, -1):
                _add(chosen[outer], prefix, c, flat, bound, moved)
                for j in range(dim):
                    prefix[j] = moved[j]
            _, a, ax, _ = _squared_distance_grads(point, prefix, c, flat, floor)
            for j in range(dim):
                gradient[j] += a * (point[j] - prefix[j]) + ax * point[j]
        for j in range(dim):
            grad_x[i, j] = 2 * commitment * weight * gradient[j]


@numba.njit(parallel=True, **JIT)
def residual_loss_grads(x, share, codebooks, c, flat, bound, floor, commitment, codes, grad_x,
                        grad_codebooks):
    """x (n, d), share (n,) each row's weight (summing to 1), codebooks (levels, s, d) ->
    the loss (returned), codes (n, levels), dL/dx (n, d) and dL/dcodebooks (levels · s, d),
    written into the arrays given. Blocks of rows walk on numba's threads; the sums over rows
    are taken afterwards in row order, so the result does not depend on the thread count."""
    n, dim = x.shape
    levels, size, _ = codebooks.shape
    terms = _code_terms(codebooks, c, flat)
    losses, code_grads = np.empty(n), np.empty((n, levels, dim))
    blocks = (n + BLOCK - 1) // BLOCK
    for block in numba.prange(blocks):
        _walk_rows(x, share, codebooks, terms, c, flat, bound, floor, commitment, block * BLOCK,
                   min(n, (block + 1) * BLOCK), codes, losses, code_grads, grad_x)
    sums = np.zeros((levels * size, dim))
    loss = 0.0
    for i in range(n):
        loss += losses[i]
        for level in range(levels):
            row = level * size + codes[i, level]
            for j in range(dim):
                sums[row, j] += code_grads[i, level, j]
    for row in range(levels * size):
        for j in range(dim):
            grad_codebooks[row, j] = sums[row, j]
    return (1 + commitment) * loss


def set_threads(count: int) -> None:
    """Run the parallel loop on ``count`` threads (torch's, so that jobs that split the cores
    between them keep to their share), at most the number numba started with."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
