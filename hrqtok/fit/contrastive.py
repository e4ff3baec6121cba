"""The softmax ranking loss of Nickel & Kiela (2017), with its gradient written out by hand.

Pairs come in groups that share their sampled negatives (as in PyTorch-BigGraph): for group
g, anchors u (G, h), positives v (G, h) and negatives n (K, h),
    L = Σ_i −log( e^{−d(u_i, v_i)} / (e^{−d(u_i, v_i)} + Σ_k e^{−d(u_i, n_k)}) ),
d being the distance of the manifold (Poincaré or Euclidean). A group
of one pair is Nickel & Kiela's independent sampling. Sharing turns the (pairs × negatives ×
h) work into batched matrix products and lets a step touch G + G + K rows of the embedding
table per group instead of G·(2 + K): scattering rows is what costs most on a CPU.

Training spends nearly all its time here, so forward and backward share every intermediate;
tests/test_contrastive.py checks loss and gradients against autograd through geometry.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from hrqtok.geometry import Manifold


class RankingLoss(NamedTuple):
    loss: Tensor  # () summed over all pairs
    grad_anchors: Tensor  # (g, G, h)
    grad_positives: Tensor  # (g, G, h)
    grad_negatives: Tensor  # (g, K, h)


def softmax_ranking_loss(anchors: Tensor, positives: Tensor, negatives: Tensor,
                         masked: Tensor | None = None, *, manifold: Manifold) -> RankingLoss:
    """anchors, positives (g, G, h); negatives (g, K, h); ``masked`` (g, G, K) bool marks
    negatives left out of a pair's softmax (hypernyms of its anchor)."""
    u2 = anchors.pow(2).sum(-1)  # (g, G)
    v2 = positives.pow(2).sum(-1)
    n2 = negatives.pow(2).sum(-1)  # (g, K)
    sq_pos = (anchors - positives).pow(2).sum(-1)
    sq_neg = (u2.unsqueeze(2) + n2.unsqueeze(1)
              - 2 * torch.bmm(anchors, negatives.transpose(1, 2))).clamp_min(0)  # (g, G, K)
    pos = manifold.distance_parts(sq_pos, u2, v2)
    neg = manifold.distance_parts(sq_neg, u2.unsqueeze(2), n2.unsqueeze(1))
    neg_logits = -neg.dist
    if masked is not None:
        neg_logits = neg_logits.masked_fill(masked, float("-inf"))
    logits = torch.cat([-pos.dist.unsqueeze(2), neg_logits], 2)  # (g, G, 1 + K)
    log_norm = torch.logsumexp(logits, dim=2)
    loss = (log_norm + pos.dist).sum()
    softmax = torch.exp(logits - log_norm.unsqueeze(2))
    # dL/dd: 1 - p for the positive, -p for each negative
    a_pos, au_pos, bv_pos = manifold.distance_chain(1 - softmax[..., 0], pos)
    a_neg, au_neg, bn_neg = manifold.distance_chain(-softmax[..., 1:], neg)
    # d‖x-y‖²/dx = 2(x - y), d‖x‖²/dx = 2x
    coef_u = 2 * (a_pos + au_pos + (a_neg + au_neg).sum(2))
    grad_anchors = (anchors * coef_u.unsqueeze(2) - 2 * a_pos.unsqueeze(2) * positives
                    - 2 * torch.bmm(a_neg, negatives))
    grad_positives = (positives * (2 * (a_pos + bv_pos)).unsqueeze(2)
                      - 2 * a_pos.unsqueeze(2) * anchors)
    grad_negatives = (negatives * (2 * (a_neg + bn_neg).sum(1)).unsqueeze(2)
                      - 2 * torch.bmm(a_neg.transpose(1, 2), anchors))
    return RankingLoss(loss, grad_anchors, grad_positives, grad_negatives)
