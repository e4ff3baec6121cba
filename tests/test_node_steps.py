"""The WordNet fit's sparse node steps: rmsprop against a slow per-node reference, its
scale-free first step, and the clip, on the ball and in flat space; each on the compiled
loop and on the tensor operations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hrqtok import geometry
from hrqtok.fit import node_steps
from hrqtok.fit.node_steps import EPS, NodeSteps, distinct_nodes
from hrqtok.geometry import Euclidean, PoincareBall


@pytest.fixture(autouse=True, params=["compiled", "tensors"])
def path(request, monkeypatch):
    """Every check on both paths: node_kernels' loop and the tensor operations."""
    monkeypatch.setattr(node_steps, "COMPILED", request.param == "compiled")
    return request.param


def _points(n, dim, seed, manifold):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    if isinstance(manifold, PoincareBall):  # spread from the origin to near the boundary
        radius = torch.rand(n, 1, generator=g, dtype=torch.float64) * 0.99
        x = x / x.norm(dim=1, keepdim=True) * radius
    return x


def _reference(table, mean_square, index, grad, lr, manifold, max_length, decay):
    """One node at a time: sum its gradients, update its mean square, step."""
    table, mean_square = table.clone(), mean_square.clone()
    for node in sorted(set(index.tolist())):
        g = grad[index == node].sum(0)
        x = table[node]
        if isinstance(manifold, PoincareBall):
            lam = 2 / (1 - x.pow(2).sum())
            length = g.norm() / lam
        else:
            length = g.norm()
        mean_square[node] = decay * mean_square[node] + (1 - decay) * length ** 2
        scaled = g / (mean_square[node].sqrt() + EPS)
        table[node] = manifold.rsgd_step(x.unsqueeze(0), scaled.unsqueeze(0), lr,
                                         max_length=max_length)[0]
    return table, mean_square


@pytest.mark.parametrize("decay", [0.9, 0.99])
@pytest.mark.parametrize("manifold", [PoincareBall(1.0), Euclidean()], ids=str)
def test_rmsprop_equals_a_per_node_reference_over_several_steps(manifold, decay):
    n, dim = 30, 5
    table = _points(n, dim, 0, manifold)
    steps = NodeSteps("rmsprop", n, manifold, max_length=0.5, rms_decay=decay)
    expected, mean_square = table.clone(), torch.zeros(n, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):  # repeated rows, rows left out, gradients of very different sizes
        index = torch.randint(n - 5, (60,), generator=g)
        grad = torch.randn(60, dim, generator=g, dtype=torch.float64) * 10 ** torch.randint(
            -4, 3, (60, 1), generator=g).to(torch.float64)
        steps.apply(table, index, grad, 0.05)
        expected, mean_square = _reference(expected, mean_square, index, grad, 0.05, manifold, 0.5,
                                           decay)
    assert torch.allclose(table, expected, atol=1e-12)
    assert torch.allclose(steps.mean_square, mean_square, rtol=1e-12)
    untouched = _points(n, dim, 0, manifold)[n - 5:]
    assert (steps.mean_square[n - 5:] == 0).all() and torch.equal(table[n - 5:], untouched)


@pytest.mark.parametrize("decay", [0.0, 0.9, 0.99])
def test_a_first_rmsprop_step_has_the_same_length_whatever_the_gradient_size(decay):
    """Hubs and leaves: gradients from 1e-6 to 1e3 all move a node lr / √(1 − decay)."""
    manifold = PoincareBall(1.0)
    n = 40
    table = _points(n, 10, 2, manifold)
    before = table.clone()
    scale = 10.0 ** torch.linspace(-6, 3, n, dtype=torch.float64).unsqueeze(1)
    g = torch.Generator().manual_seed(3)
    grad = torch.randn(n, 10, generator=g, dtype=torch.float64) * scale
    lr = 1e-4
    NodeSteps("rmsprop", n, manifold, max_length=1.0, rms_decay=decay).apply(
        table, torch.arange(n), grad, lr)
    moved = geometry.dist(before, table, c=1.0)
    assert torch.allclose(moved, torch.full_like(moved, lr / math.sqrt(1 - decay)), rtol=1e-3)
    # plain Riemannian SGD moves them by their gradients' lengths: 9 orders of magnitude apart
    plain = before.clone()
    NodeSteps("rsgd", n, manifold, max_length=1.0, rms_decay=decay).apply(
        plain, torch.arange(n), grad, lr)
    spread = geometry.dist(before, plain, c=1.0)
    assert spread.max() / spread.min() > 1e6


@pytest.mark.parametrize("name", ["rsgd", "rmsprop"])
def test_the_clip_holds_for_both_rules(name):
    manifold = PoincareBall(1.0)
    table = _points(20, 4, 4, manifold)
    before = table.clone()
    grad = torch.randn(20, 4, dtype=torch.float64) * 1e3
    NodeSteps(name, 20, manifold, max_length=1e-3, rms_decay=0.99).apply(
        table, torch.arange(20), grad, 10.0)
    moved = geometry.dist(before, table, c=1.0)
    assert moved.max() <= 1.01e-3 and moved.min() > 0.9e-3


def test_an_unknown_rule_or_decay_is_refused():
    with pytest.raises(ValueError, match="node optimizer"):
        NodeSteps("adam", 3, Euclidean(), max_length=1.0, rms_decay=0.9)
    with pytest.raises(ValueError, match="RMS decay"):
        NodeSteps("rmsprop", 3, Euclidean(), max_length=1.0, rms_decay=1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 49), max_size=300))
def test_distinct_nodes_is_torch_unique(ids):
    index = torch.tensor(ids, dtype=torch.long)
    expected = torch.unique(index, return_inverse=True, return_counts=True)
    got = distinct_nodes(index, 50)
    for a, b in zip(got, expected):
        assert a.dtype == torch.int64 and torch.equal(a, b)


@pytest.mark.parametrize("name", ["rsgd", "rmsprop"])
@pytest.mark.parametrize("manifold", [PoincareBall(0.5), Euclidean()], ids=str)
def test_the_compiled_step_equals_the_tensor_step(name, manifold, monkeypatch):
    """Many repeats of few nodes, nodes near the boundary, clipped and unclipped steps."""
    n, dim = 50, 10
    g = torch.Generator().manual_seed(5)
    start = _points(n, dim, 7, manifold)
    tables, states = {}, {}
    for compiled in (True, False):
        monkeypatch.setattr(node_steps, "COMPILED", compiled)
        table = start.clone()
        steps = NodeSteps(name, n, manifold, max_length=0.3, rms_decay=0.9)
        g.manual_seed(5)
        for _ in range(5):
            index = torch.randint(n, (400,), generator=g)
            grad = torch.randn(400, dim, generator=g, dtype=torch.float64) * 10 ** torch.randint(
                -3, 3, (400, 1), generator=g).to(torch.float64)
            steps.apply(table, index, grad, 0.02)
        tables[compiled], states[compiled] = table, steps.mean_square
    torch.testing.assert_close(tables[True], tables[False], rtol=1e-12, atol=1e-14)
    if name == "rmsprop":
        torch.testing.assert_close(states[True], states[False], rtol=1e-12, atol=0)
