"""Every numerical-stability constant of hrqtok's geometry. Nothing else writes an epsilon."""

from __future__ import annotations

import torch

# Points are kept at norm <= (1 - margin) / sqrt(c). float32 cannot resolve 1 - c‖x‖² much below
# 1e-7 and artanh/λ blow up there, so the margin depends on the dtype (geoopt uses the same).
BALL_MARGIN = {torch.float32: 4e-3, torch.float64: 1e-5}
# artanh is evaluated on inputs clamped to ±(1 - ARTANH_MARGIN): the last float below 1.
ARTANH_MARGIN = {torch.float32: 1e-7, torch.float64: 1e-15}
# tanh saturates to exactly 1 in float32 past ~9; clamping keeps its gradient finite.
TANH_LIMIT = 15.0
# Floor for norms and denominators that are divided by (the zero vector has no direction).
MIN_NORM = 1e-15
# arcosh is evaluated on inputs >= 1 + ARCOSH_MARGIN: its derivative is infinite at 1 (x = y).
ARCOSH_MARGIN = {torch.float32: 1e-6, torch.float64: 1e-12}
# Keys per chunk in nearest-code search, (rows × codes): 4 MB of float32 stays in a core's L2
# cache while its row minima are taken; a 64 MB chunk made the search 2–3× slower.
SEARCH_KEYS = 1 << 20


def margin(table: dict, dtype: torch.dtype) -> float:
    """A per-dtype margin; bfloat16/float16 get float32's (they are not recommended on the ball)."""
    return table.get(dtype, table[torch.float32])
