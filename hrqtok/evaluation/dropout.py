"""Dropout with a cheaper mask on the CPU.

torch's CPU dropout draws one Bernoulli number per element; in the downstream transformer
(sequences of k + 1 ids, so little matrix work per step) that took a quarter of a training
step on 2 cores. Here one 64-bit random word gives four 16-bit lanes, and an element is kept
when its lane is at or above a threshold: the keep rate is 1 - p rounded to a multiple of
1/65,536. Other devices keep torch's own dropout, which is fast there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LANES = 65_536  # values a 16-bit lane takes, from -32,768 to 32,767


def keep_mask(shape: torch.Size, p: float) -> Tensor:
    """Bool CPU mask of ``shape``: each element True with probability 1 - round(p·65,536)/65,536,
    independently, from torch's default CPU generator."""
    count = shape.numel()
    words = torch.empty(-(-count // 4), dtype=torch.int64)
    # the full int64 range: random_() alone would leave each word's top bit clear
    lanes = words.random_(-2 ** 63, 2 ** 63 - 1).view(torch.int16)[:count]
    return (lanes >= round(p * LANES) - LANES // 2).view(shape)


class LaneDropout(nn.Module):
    """nn.Dropout's contract (zero with probability p in training, scale the rest by
    1 / (1 - p), identity in eval) with the mask of ``keep_mask`` on the CPU."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), found {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        with torch.no_grad():
            scale = keep_mask(x.shape, self.p).to(x.dtype).mul_(1 / (1 - self.p))
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lane_dropout(module: nn.Module) -> None:
    """Replace every nn.Dropout inside ``module`` with a LaneDropout of the same p (the
    attention weights' dropout is a float inside nn.MultiheadAttention and stays torch's)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Dropout):
            setattr(module, name, LaneDropout(child.p))
        else:
            use_lane_dropout(child)
