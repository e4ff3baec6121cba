"""The softmax ranking loss of Nickel & Kiela (2017), with its gradient written out by hand.

Pairs come in groups that share their sampled negatives (as in PyTorch-BigGraph): for group
g, anchors u (G, h), positives v (G, h) and negatives n (K, h),
    L = Σ_i −log( e^{−d(u_i, v_i)} / (e^{−d(u_i, v_i)} + Σ_k e^{−d(u_i, n_k)}) ),
d being the distance of the manifold (Poincaré or Euclidean). A group
of one pair is Nickel & Kiela's independent sampling. Sharing turns the (pairs × negatives ×
h) work into batched matrix products and lets a step touch G + G + K rows of the embedding
table per group instead of G·(2 + K): scattering rows is what costs most on a CPU.

Training spends nearly all its time here, so forward and backward share every intermediate;
``table_ranking_loss`` reads the rows from the embedding table, and on the CPU runs
``ranking_kernels``' compiled loop instead. tests/test_contrastive.py checks loss and gradients
of both against autograd through geometry.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from hrqtok.geometry import Manifold
from hrqtok.geometry.ball_autograd import KERNEL_DTYPES
from hrqtok.geometry.constants import ARCOSH_MARGIN, margin

COMPILED = True  # table_ranking_loss on the CPU runs ranking_kernels' loop (tests turn it off)


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


def table_ranking_loss(table: Tensor, anchors: Tensor, positives: Tensor, negatives: Tensor,
                       masked: Tensor | None = None, *, manifold: Manifold) -> RankingLoss:
    """``softmax_ranking_loss`` of the rows of ``table`` (n, h) at the int64 indices anchors,
    positives (g, G) and negatives (g, K)."""
    if COMPILED and table.device.type == "cpu" and table.dtype in KERNEL_DTYPES:
        from hrqtok.fit import ranking_kernels  # numba: imported where a WordNet fit steps
        from hrqtok.quantize.walk_kernels import set_threads

        dim = table.shape[1]
        grads = (table.new_empty(anchors.shape + (dim,)), table.new_empty(positives.shape + (dim,)),
                 table.new_empty(negatives.shape + (dim,)))
        if masked is None:
            masked = torch.zeros(anchors.shape + negatives.shape[1:], dtype=torch.bool)
        set_threads(torch.get_num_threads())
        c = 0.0 if manifold.flat else manifold.c
        loss = ranking_kernels.ranking_loss_grads(
            table.contiguous().numpy(), *(i.to(torch.int64).contiguous().numpy()
                                          for i in (anchors, positives, negatives)),
            masked.contiguous().numpy(), c, manifold.flat,
            1.0 + margin(ARCOSH_MARGIN, table.dtype), *(g.numpy() for g in grads))
        return RankingLoss(torch.tensor(loss, dtype=table.dtype), *grads)

    def rows(index: Tensor) -> Tensor:
        return table.index_select(0, index.reshape(-1)).view(*index.shape, -1)

    return softmax_ranking_loss(rows(anchors), rows(positives), rows(negatives), masked,
                                manifold=manifold)
