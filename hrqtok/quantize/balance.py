"""Balanced code assignment (`--balance sinkhorn`): the codes of a level given to a set of
residuals so that every code is used about equally, by Sinkhorn-Knopp on the costs (as LC-Rec
and TorchEasyRec balance their last level; here any level, at fit and at encode).

The entropic transport plan P = diag(u) exp(-C/ε) diag(v) with row sums 1 (each item one code)
and column sums n/s (uniform usage) is found by alternating normalisations (matrix-vector
products on a column-scaled kernel; the log domain when those overflow);
each item takes the code of its largest share, within a room of ceil(n / s) items per code. Per-row constants in C cancel (absorbed by u),
so any costs that order a row like its distances do. Deterministic: fixed iterations in
float64, no sampling. The (n × s) plan is held whole, so balance applies to the items encoded
together (a call of encode), not across calls.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SINKHORN_ITERS = 100  # alternating normalisations; the usage error falls geometrically
# entropic regularisation ε in units of the costs' spread: small enough that an item keeps its
# near codes, large enough for the plan to move items between codes of similar cost
SINKHORN_EPSILON = 0.05


def balanced_assignment(costs: Tensor, *, iters: int = SINKHORN_ITERS,
                        epsilon: float = SINKHORN_EPSILON) -> Tensor:
    """costs (n, s) -> codes (n,) int64: the argmax per row of the Sinkhorn plan with uniform
    code marginals."""
    n, s = costs.shape
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=costs.device)
    c = costs.detach().to(torch.float64)
    c = c - c.min(dim=1, keepdim=True).values  # per-row shifts change nothing; keep exp tame
    spread = float(c.std()) if c.numel() > 1 else 0.0
    if not spread > 0:  # every cost equal: any assignment is balanced-optimal
        return torch.argmin(costs, dim=1)
    log_kernel = -c / (epsilon * spread)
    scores = _scaled_sinkhorn(log_kernel, iters)
    if not torch.isfinite(scores).all():  # scalings out of float64's range: the log domain
        scores = _log_sinkhorn(log_kernel, iters)
    return capacity_rounding(scores)


def _scaled_sinkhorn(log_kernel: Tensor, iters: int) -> Tensor:
    """The plan's log scores (up to a per-row constant) by matrix-vector Sinkhorn on the kernel
    with each column divided by its largest entry: every row and every column then holds a 1
    (rows were shifted to a minimum cost of 0), so no sum underflows. Two (n × s) products
    per iteration instead of two log-sum-exps: 5-17x faster, the same codes."""
    n, s = log_kernel.shape
    column_max = log_kernel.max(dim=0).values
    kernel = torch.exp(log_kernel - column_max)
    rows = torch.ones(n, dtype=torch.float64, device=log_kernel.device)
    cols = torch.full((s,), n / s, dtype=torch.float64, device=log_kernel.device)
    b = torch.ones(s, dtype=torch.float64, device=log_kernel.device)
    for _ in range(iters):
        a = rows / (kernel @ b)
        b = cols / (kernel.T @ a)
    return log_kernel - column_max + torch.log(b)


def _log_sinkhorn(log_kernel: Tensor, iters: int) -> Tensor:
    """The same plan by alternating log-sum-exp normalisations (slow, never overflows)."""
    n, s = log_kernel.shape
    log_rows = torch.zeros(n, dtype=torch.float64, device=log_kernel.device)
    log_cols = torch.full((s,), math.log(n / s), dtype=torch.float64, device=log_kernel.device)
    u = torch.zeros(n, dtype=torch.float64, device=log_kernel.device)
    v = torch.zeros(s, dtype=torch.float64, device=log_kernel.device)
    for _ in range(iters):
        u = log_rows - torch.logsumexp(log_kernel + v.unsqueeze(0), dim=1)
        v = log_cols - torch.logsumexp(log_kernel + u.unsqueeze(1), dim=0)
    return log_kernel + v.unsqueeze(0)  # u is constant along a row


def capacity_rounding(scores: Tensor) -> Tensor:
    """scores (n, s) -> codes (n,) with no code used more than ceil(n / s) times: in rounds,
    every unassigned row proposes its best code that still has room, and each code accepts its
    highest-scoring proposals up to its room (ties by row order). The plan's argmax alone can
    miss uniform usage by ±30 %; this keeps it to the nearest whole number."""
    n, s = scores.shape
    room = torch.full((s,), -(-n // s), dtype=torch.long, device=scores.device)
    codes = torch.full((n,), -1, dtype=torch.long, device=scores.device)
    rows = torch.arange(n, device=scores.device)
    while len(rows):
        masked = scores[rows].masked_fill((room == 0).unsqueeze(0), float("-inf"))
        best = masked.argmax(dim=1)
        value = masked.gather(1, best.unsqueeze(1)).squeeze(1)
        order = torch.argsort(-value, stable=True)  # best proposals first, ties by row
        order = order[torch.argsort(best[order], stable=True)]  # grouped by code
        grouped = best[order]
        start = torch.searchsorted(grouped, grouped, side="left")
        rank = torch.arange(len(order), device=scores.device) - start  # place among its code's
        accepted = order[rank < room[grouped]]
        codes[rows[accepted]] = best[accepted]
        room -= torch.bincount(best[accepted], minlength=s)
        rows = rows[codes[rows] < 0]
    return codes
