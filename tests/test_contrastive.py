"""The hand-written ranking loss gradient against autograd through geometry.dist."""

from __future__ import annotations

import pytest
import torch

from hrqtok import geometry
from hrqtok.fit.contrastive import softmax_ranking_loss
from hrqtok.geometry import Euclidean, PoincareBall


def _reference(u, v, n, masked, c):
    u, v, n = (t.clone().requires_grad_() for t in (u, v, n))
    dist = (lambda a, b: geometry.dist(a, b, c=c)) if c else (lambda a, b: (a - b).norm(dim=-1))
    logits = torch.cat([-dist(u, v).unsqueeze(2),
                        (-dist(u.unsqueeze(2), n.unsqueeze(1))).masked_fill(masked, float("-inf"))], 2)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[2]), torch.zeros(logits.shape[0] * logits.shape[1],
                                                         dtype=torch.long), reduction="sum")
    loss.backward()
    return loss.detach(), u.grad, v.grad, n.grad


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("c", [1.0, 0.3, None])
@pytest.mark.parametrize("groups,group,negatives", [(3, 4, 5), (1, 1, 7), (5, 1, 2)])
def test_gradient_matches_autograd(seed, c, groups, group, negatives):
    g = torch.Generator().manual_seed(seed)
    radius = 0.9 if c is None else 0.9 / c ** 0.5

    def pts(*shape):
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        return x / x.norm(dim=-1, keepdim=True) * torch.rand(*shape[:-1], 1, generator=g,
                                                            dtype=torch.float64) * radius

    u, v, n = pts(groups, group, 4), pts(groups, group, 4), pts(groups, negatives, 4)
    masked = torch.rand(groups, group, negatives, generator=g) < 0.2
    out = softmax_ranking_loss(u, v, n, masked,
                               manifold=PoincareBall(c) if c else Euclidean())
    loss, gu, gv, gn = _reference(u, v, n, masked, c)
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-9)
    for ours, theirs in ((out.grad_anchors, gu), (out.grad_positives, gv), (out.grad_negatives, gn)):
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_near_the_boundary(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 5, 3, generator=g, dtype=dtype)
    x = geometry.project(x / x.norm(dim=-1, keepdim=True), c=1.0)  # at the margin
    anchors, positives = x[0, :, :1].reshape(1, 8, 3), x[1, :, :1].reshape(1, 8, 3)
    out = softmax_ranking_loss(anchors, positives, x[0, :5, 1].reshape(1, 5, 3), None,
                               manifold=PoincareBall(1.0))
    assert torch.isfinite(out.loss) and all(torch.isfinite(t).all() for t in out[1:])


def test_dist_arcosh_equals_dist():
    g = torch.Generator().manual_seed(1)
    for scale, rtol in ((0.2, 1e-9), (2.0, 1e-6)):  # 2.0: most points at the ball's margin
        x = geometry.project(torch.randn(50, 4, generator=g, dtype=torch.float64) * scale, c=1.0)
        y = geometry.project(torch.randn(50, 4, generator=g, dtype=torch.float64) * scale, c=1.0)
        assert torch.allclose(geometry.dist_arcosh(x, y, c=1.0), geometry.dist(x, y, c=1.0),
                              rtol=rtol)
