"""The hand-written ranking loss gradient against autograd through geometry.dist, and the
table path (``table_ranking_loss``: ranking_kernels' compiled loop, or gathered rows and the
tensor operations) against both."""

from __future__ import annotations

import pytest
import torch

from hrqtok import geometry
from hrqtok.fit import contrastive
from hrqtok.fit.contrastive import softmax_ranking_loss, table_ranking_loss
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


def _table(n, dim, generator, c, dtype=torch.float64, spread=0.3):
    """n points from near the origin (radius^(1/spread) small) out to the ball's margin."""
    x = torch.randn(n, dim, generator=generator, dtype=dtype)
    radius = torch.rand(n, 1, generator=generator, dtype=dtype).pow(spread)
    x = x / x.norm(dim=-1, keepdim=True) * radius * (1.0 if c is None else c ** -0.5)
    return x if c is None else geometry.project(x, c=c)


def _indices(n, groups, group, negatives, generator, masked_share=0.2):
    anchors = torch.randint(n, (groups, group), generator=generator)
    # never the anchor itself (no train pair is (u, u)); the distance there is at its floor
    positives = (anchors + torch.randint(1, n, (groups, group), generator=generator)) % n
    drawn = torch.randint(n, (groups, negatives), generator=generator)
    # as the sampler: a negative that is the anchor itself is always masked
    masked = ((torch.rand(groups, group, negatives, generator=generator) < masked_share)
              | (anchors.unsqueeze(2) == drawn.unsqueeze(1)))
    return anchors, positives, drawn, masked


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [1.0, 0.3, None])
def test_table_path_matches_autograd(monkeypatch, compiled, seed, c):
    monkeypatch.setattr(contrastive, "COMPILED", compiled)
    g = torch.Generator().manual_seed(seed)
    table = _table(40, 4, g, c)  # 40 rows: repeated anchors, positives and negatives
    anchors, positives, negatives, masked = _indices(40, 3, 5, 7, g)
    masked[0, 0] = True  # a pair with every negative masked: loss and gradients 0
    out = table_ranking_loss(table, anchors, positives, negatives, masked,
                             manifold=PoincareBall(c) if c else Euclidean())
    loss, gu, gv, gn = _reference(table[anchors], table[positives], table[negatives], masked, c)
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-9)
    for ours, theirs in ((out.grad_anchors, gu), (out.grad_positives, gv), (out.grad_negatives, gn)):
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("c", [1.0, 0.5, None])
def test_compiled_table_path_equals_tensors_at_a_wordnet_shape(monkeypatch, dtype, rtol, c):
    """16 groups of 32 pairs sharing 50 negatives (a batch of 512), 10-d, many rows at the
    ball's margin where 1 − c‖x‖² is tiny."""
    g = torch.Generator().manual_seed(3)
    table = _table(5000, 10, g, c, dtype, spread=0.05)
    args = _indices(5000, 16, 32, 50, g, masked_share=0.02)
    manifold = PoincareBall(c) if c else Euclidean()
    outs = {}
    for compiled in (True, False):
        monkeypatch.setattr(contrastive, "COMPILED", compiled)
        outs[compiled] = table_ranking_loss(table, *args, manifold=manifold)
    assert outs[True].loss.item() == pytest.approx(outs[False].loss.item(), rel=rtol)
    for ours, theirs in zip(outs[True][1:], outs[False][1:]):
        assert ours.dtype == dtype
        # the tensor path expands ‖u − n‖², which loses digits at close pairs: compare on scale
        assert (ours - theirs).abs().max() <= rtol * theirs.abs().max()


def test_compiled_table_path_does_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(4)
    table = _table(3000, 10, g, 1.0, spread=0.05)
    args = _indices(3000, 16, 32, 50, g)
    threads = torch.get_num_threads()
    outs = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            outs.append(table_ranking_loss(table, *args, manifold=PoincareBall(1.0)))
    finally:
        torch.set_num_threads(threads)
    assert outs[0].loss.item() == outs[1].loss.item()
    for first, second in zip(outs[0][1:], outs[1][1:]):
        assert torch.equal(first, second)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_table_path_finite_at_the_margin(monkeypatch, compiled, dtype):
    monkeypatch.setattr(contrastive, "COMPILED", compiled)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=dtype)
    table = geometry.project(x / x.norm(dim=-1, keepdim=True), c=1.0)  # every row at the margin
    args = _indices(30, 2, 8, 5, g, masked_share=0.0)
    out = table_ranking_loss(table, *args, manifold=PoincareBall(1.0))
    assert torch.isfinite(out.loss) and all(torch.isfinite(t).all() for t in out[1:])
