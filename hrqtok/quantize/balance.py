"""Balanced code assignment (`--balance sinkhorn`): the codes of a level given to a set of
residuals so that every code is used about equally, by Sinkhorn-Knopp on the costs (as LC-Rec
and TorchEasyRec balance their last level; here any level, at fit and at encode).

The entropic transport plan P = diag(u) exp(-C/ε) diag(v) with row sums 1 (each item one code)
and column sums n/s (uniform usage) is found by alternating normalisations in the log domain;
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
    log_rows = torch.zeros(n, dtype=torch.float64, device=c.device)
    log_cols = torch.full((s,), math.log(n / s), dtype=torch.float64, device=c.device)
    u = torch.zeros(n, dtype=torch.float64, device=c.device)
    v = torch.zeros(s, dtype=torch.float64, device=c.device)
    for _ in range(iters):
        u = log_rows - torch.logsumexp(log_kernel + v.unsqueeze(0), dim=1)
        v = log_cols - torch.logsumexp(log_kernel + u.unsqueeze(1), dim=0)
    return capacity_rounding(log_kernel + v.unsqueeze(0))  # u is constant along a row


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
