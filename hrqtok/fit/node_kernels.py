"""A compiled loop (numba) for ``NodeSteps.apply`` on the CPU: a WordNet batch's sparse node
step, one touched node at a time.

A batch of 512 pairs on all nouns has about 2,550 gradient rows of about 1,500 distinct
nodes; as tensor operations the step (distinct nodes, their summed gradients, the rmsprop mean
squares, the clipped Riemannian step and its projection) is 60 torch calls (torch.profiler's
top-level ops) and a few NumPy ones: 0.8 of a step's 5.9 ms. Here one pass sums each node's rows in the order they come (as ``index_add_`` does),
and one loop over the distinct nodes steps them with the formulas of ``NodeSteps.apply``,
``Manifold.gradient_norm`` and ``rsgd_step``. ``tests/test_node_steps.py`` runs its checks on
both paths. Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hrqtok.geometry.constants import MIN_NORM

JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@numba.njit(**JIT)
def sparse_step(table, index, grad, lr, mean_square, rmsprop, decay, eps, c, flat, bound,
                max_length, clip, position):
    """Step the rows ``index`` (m,) of ``table`` (n, d) in place by their summed ``grad``
    (m, d). ``mean_square`` (n,) is updated where ``rmsprop``; ``position`` (n,) is scratch,
    -1 everywhere, and left so."""
    m, dim = grad.shape
    touched = np.empty(m, np.int64)
    count = 0
    for row in range(m):
        node = index[row]
        if position[node] < 0:
            position[node] = count
            touched[count] = node
            count += 1
    summed = np.zeros((count, dim))
    for row in range(m):
        at = position[index[row]]
        for j in range(dim):
            summed[at, j] += grad[row, j]
    for at in range(count):
        node = touched[at]
        position[node] = -1
        g = summed[at]
        x2 = g2 = 0.0
        for j in range(dim):
            x2 += table[node, j] * table[node, j]
            g2 += g[j] * g[j]
        # λ_x = 2 / (1 - c‖x‖²) on the ball (``poincare.lambda_x``); 1 in flat space, where
        # the step is lr·g and nothing is projected
        lam = 1.0 if flat else 2.0 / max(1 - c * x2, MIN_NORM)
        scale = lr / (lam * lam)
        if rmsprop:
            length = math.sqrt(g2) / lam if not flat else math.sqrt(g2)
            mean_square[node] = decay * mean_square[node] + (1 - decay) * length * length
            scale /= math.sqrt(mean_square[node]) + eps
        if clip:  # the step's length in the metric, λ_x‖step‖, at most max_length
            step_norm = math.sqrt(max(scale * scale * g2, MIN_NORM * MIN_NORM))
            scale *= min(max_length / (lam * step_norm), 1.0)
        moved2 = 0.0
        for j in range(dim):
            value = table[node, j] - scale * g[j]
            table[node, j] = value
            moved2 += value * value
        if not flat:  # ``poincare.project``
            shrink = bound / math.sqrt(max(moved2, MIN_NORM * MIN_NORM))
            if shrink < 1.0:
                for j in range(dim):
                    table[node, j] *= shrink
