import math

import geoopt.manifolds.stereographic.math as gmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hrqtok import geometry
from hrqtok.geometry import Euclidean, PoincareBall, manifolds
from hrqtok.geometry.columns import row_argmin
from tests.conftest import DTYPES, SEEDS
from tests.reference import nearest_codes_naive

CURVATURES = [0.5, 1.0, 2.0]



def _manifold(c):
    """The manifold a test's curvature stands for (None: Euclidean)."""
    return Euclidean() if c is None else PoincareBall(c)

def points(n, dim, *, c, dtype, seed, near_boundary=False):
    """Random points of the ball; near_boundary puts norms within 1e-6 of the bound."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=dtype), dim=-1)
    if near_boundary:
        radius = (1 - 10 ** -torch.empty(n, 1, dtype=dtype).uniform_(1, 6, generator=g)) / math.sqrt(c)
    else:
        radius = torch.rand(n, 1, generator=g, dtype=dtype) * 0.9 / math.sqrt(c)
    return geometry.project(direction * radius, c=c)


@pytest.mark.parametrize("c", CURVATURES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_functions_match_geoopt(c, dtype):
    dtype = getattr(torch, dtype)
    x, y = points(64, 8, c=c, dtype=dtype, seed=1), points(64, 8, c=c, dtype=dtype, seed=2)
    k = torch.tensor(-c, dtype=dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(geometry.mobius_add(x, y, c=c), gmath.mobius_add(x, y, k=k), **tol)
    torch.testing.assert_close(geometry.dist(x, y, c=c), gmath.dist(x, y, k=k), **tol)
    torch.testing.assert_close(geometry.logmap0(x, c=c), gmath.logmap0(x, k=k), **tol)
    v = torch.randn(64, 8, dtype=dtype) * 0.5 / math.sqrt(c)  # inside the clipping radius
    torch.testing.assert_close(geometry.expmap0(v, c=c), gmath.expmap0(v, k=k), **tol)
    w = torch.randn(5, 8, dtype=dtype) * 0.3
    torch.testing.assert_close(geometry.mobius_matvec(w, x, c=c), gmath.mobius_matvec(w, x, k=k), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_points_stay_inside_and_finite_near_boundary(dtype, seed):
    dtype = getattr(torch, dtype)
    for c in CURVATURES:
        x = points(32, 6, c=c, dtype=dtype, seed=seed, near_boundary=True).requires_grad_(True)
        y = points(32, 6, c=c, dtype=dtype, seed=seed + 100, near_boundary=True)
        outputs = [
            geometry.project(geometry.mobius_add(x, y, c=c), c=c),
            geometry.project(geometry.mobius_add(-x, y, c=c), c=c),
            geometry.expmap0(geometry.logmap0(x, c=c) * 3, c=c),
            geometry.mobius_matvec(torch.randn(4, 6, dtype=dtype), x, c=c),
        ]
        for out in outputs:
            assert torch.isfinite(out).all()
            geometry.check_on_ball(out, c=c)
        total = sum(o.sum() for o in outputs) + geometry.dist(x, y, c=c).sum()
        (grad,) = torch.autograd.grad(total, x)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_inputs_have_finite_values_and_gradients(dtype):
    dtype = getattr(torch, dtype)
    for scale in (0.0, 1e-15, 1e-10, 1e-5):
        v = (torch.ones(3, 4, dtype=dtype) * scale).requires_grad_(True)
        out = geometry.logmap0(geometry.expmap0(v, c=1.0), c=1.0) + geometry.dist(v, v * 0, c=1.0)[:, None]
        (grad,) = torch.autograd.grad(out.sum(), v)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS[:5])
def test_exp_log_round_trip(dtype, seed):
    dtype = getattr(torch, dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for c in CURVATURES:
        # Tangent vectors up to radius ~2.2/sqrt(c): beyond artanh(1 - margin) the ball clips.
        v = torch.randn(50, 7, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 0.5 / math.sqrt(c)
        torch.testing.assert_close(geometry.logmap0(geometry.expmap0(v, c=c), c=c), v, rtol=tol, atol=tol)
        x = points(50, 7, c=c, dtype=dtype, seed=seed)
        torch.testing.assert_close(geometry.expmap0(geometry.logmap0(x, c=c), c=c), x, rtol=tol, atol=tol)


def test_left_cancellation_in_float64():
    x, y = points(100, 5, c=1.0, dtype=torch.float64, seed=3), points(100, 5, c=1.0, dtype=torch.float64, seed=4)
    back = geometry.mobius_add(x, geometry.mobius_add(-x, y, c=1.0), c=1.0)
    torch.testing.assert_close(back, y, rtol=1e-10, atol=1e-12)
    # Möbius addition is not commutative: the order matters in HRQ.
    assert not torch.allclose(geometry.mobius_add(x, y, c=1.0), geometry.mobius_add(y, x, c=1.0))


def test_hand_checked_values():
    # On the 1-d ball with c = 1: 0.5 ⊕ 0.5 = 1 / 1.25 = 0.8; d(0, 0.5) = 2 artanh(0.5) = ln 3.
    half = torch.tensor([[0.5]], dtype=torch.float64)
    assert geometry.mobius_add(half, half, c=1.0).item() == pytest.approx(0.8)
    assert geometry.dist(half * 0, half, c=1.0).item() == pytest.approx(math.log(3))
    assert geometry.expmap0(torch.tensor([[1.0]], dtype=torch.float64), c=1.0).item() == pytest.approx(math.tanh(1))


def test_check_on_ball_names_manifold_norm_and_bound():
    with pytest.raises(ValueError, match=r"Poincaré ball of curvature 2.0: norm 1 >= bound 0.707107"):
        geometry.check_on_ball(torch.tensor([[1.0, 0.0]]), c=2.0, what="codebook")


@pytest.mark.parametrize("c", [None, 0.5, 1.0])
@pytest.mark.parametrize("seed", SEEDS[:5])
def test_nearest_codes_matches_naive_reference(c, seed):
    dtype = torch.float64
    x = points(300, 6, c=c or 1.0, dtype=dtype, seed=seed, near_boundary=seed % 2 == 1)
    codebook = points(37, 6, c=c or 1.0, dtype=dtype, seed=seed + 50)
    fast = _manifold(c).nearest(x, codebook)
    expected, distances = nearest_codes_naive(x, codebook, c=c)
    chosen = distances.gather(1, fast[:, None]).squeeze(1)
    best = distances.gather(1, expected[:, None]).squeeze(1)
    torch.testing.assert_close(chosen, best, rtol=1e-7, atol=1e-9)  # same distance (ties allowed)
    assert (fast == expected).float().mean() > 0.99


def test_nearest_codes_chunks(monkeypatch):
    monkeypatch.setattr(manifolds, "SEARCH_KEYS", 63)  # 7 rows of 9 codes a chunk
    shapes = []
    monkeypatch.setattr(manifolds, "row_argmin",
                        lambda keys: shapes.append(tuple(keys.shape)) or row_argmin(keys))
    x, codebook = points(50, 4, c=1.0, dtype=torch.float64, seed=0), points(9, 4, c=1.0, dtype=torch.float64, seed=1)
    assert torch.equal(PoincareBall(1.0).nearest(x, codebook), nearest_codes_naive(x, codebook, c=1.0)[0])
    assert shapes == [(7, 9)] * 7 + [(1, 9)]


def _torch_argmin(keys):
    return keys.min(dim=-1).indices


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_argmin_is_torch_min_on_ties_nan_and_infinities(dtype):
    nan, inf = float("nan"), float("inf")
    keys = torch.tensor([[1.0, nan, 0.0], [2.0, 2.0, 3.0], [inf, inf, inf], [-inf, 0.0, -inf],
                         [nan, nan, 1.0], [3.0, 1.0, 1.0]], dtype=dtype)
    assert torch.equal(row_argmin(keys), torch.tensor([1, 0, 0, 0, 0, 1]))
    assert torch.equal(row_argmin(keys), _torch_argmin(keys))
    assert row_argmin(keys).dtype == torch.int64
    assert row_argmin(keys[:0]).shape == (0,)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.sampled_from([torch.float32, torch.float64]),
       st.integers(0, 2**31 - 1))
def test_row_argmin_matches_torch_min_on_random_keys_with_ties(rows, codes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, 4, (rows, codes), generator=g).to(dtype)  # many ties
    keys[torch.rand(rows, codes, generator=g) < 0.05] = float("nan")
    assert torch.equal(row_argmin(keys), _torch_argmin(keys))
    assert torch.equal(row_argmin(keys.T.contiguous().T), _torch_argmin(keys))  # strided rows


def test_row_argmin_takes_torch_where_numpy_has_no_dtype():
    keys = torch.tensor([[2.0, 1.0, 1.0], [0.5, 3.0, 0.5]], dtype=torch.bfloat16)
    assert torch.equal(row_argmin(keys), torch.tensor([1, 0]))


@pytest.mark.parametrize("c", [1.0, 0.5, None])
def test_rsgd_step_formula_and_clip(c):
    g = torch.Generator().manual_seed(0)
    x = geometry.project(torch.randn(64, 5, generator=g, dtype=torch.float64) * 0.5, c=c or 1.0)
    grad = torch.randn(64, 5, generator=g, dtype=torch.float64) * torch.logspace(-3, 3, 64,
                                                                                 dtype=torch.float64)[:, None]
    inverse_metric = 1.0 if c is None else (1 - c * x.pow(2).sum(-1, keepdim=True)).pow(2) / 4
    free = _manifold(c).rsgd_step(x, grad, 0.01)
    raw = x - 0.01 * inverse_metric * grad
    assert torch.allclose(free, raw if c is None else geometry.project(raw, c=c))
    clipped = _manifold(c).rsgd_step(x, grad, 0.01, max_length=0.1)
    step = x - clipped
    metric = 1.0 if c is None else 2 / (1 - c * x.pow(2).sum(-1, keepdim=True))
    length = (metric * step).norm(dim=-1)
    small = (metric * 0.01 * inverse_metric * grad).norm(dim=-1) <= 0.1
    assert small.any() and (~small).any()
    assert torch.allclose(clipped[small], free[small])
    if c is not None:
        inside = clipped.norm(dim=-1) < geometry.max_norm(c=c, dtype=x.dtype)
        assert torch.allclose(length[~small & inside], torch.full_like(length[~small & inside], 0.1))
    else:
        assert torch.allclose(length[~small], torch.full_like(length[~small], 0.1))


@pytest.mark.parametrize("c", [None, *CURVATURES])
@pytest.mark.parametrize("near_boundary", [False, True])
def test_squared_distance_grads_match_autograd(c, near_boundary):
    x = points(50, 6, c=c or 1.0, dtype=torch.float64, seed=1, near_boundary=near_boundary)
    y = points(50, 6, c=c or 1.0, dtype=torch.float64, seed=2, near_boundary=near_boundary)
    y[0] = x[0]  # x = y: the gradient is 0, not NaN
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    # the arcosh form as reference: the Möbius form loses digits this close to the boundary
    d = (xr - yr).norm(dim=-1) if c is None else geometry.dist_arcosh(xr, yr, c=c)
    d[1:].pow(2).sum().backward()
    squared, grad_x, grad_y = _manifold(c).squared_distance_grads(x, y)
    torch.testing.assert_close(squared[1:], d[1:].detach().pow(2), rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(grad_x[1:], xr.grad[1:], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grad_y[1:], yr.grad[1:], rtol=1e-6, atol=1e-8)
    assert squared[0] == pytest.approx(0, abs=1e-10)
    assert torch.equal(grad_x[0], torch.zeros(6, dtype=torch.float64))


@pytest.mark.parametrize("c", [0.5, 1.0, None])
def test_distance_keys_give_the_distance_of_every_pair(c):
    x = points(30, 4, c=c, dtype=torch.float64, seed=3) if c else torch.randn(30, 4, dtype=torch.float64)
    codes = points(7, 4, c=c, dtype=torch.float64, seed=4) if c else torch.randn(7, 4, dtype=torch.float64)
    keys = _manifold(c).distance_keys(x, codes)
    if c is None:
        expected = torch.cdist(x, codes)
        torch.testing.assert_close(keys.sqrt(), expected)
    else:
        expected = geometry.dist(x.unsqueeze(1), codes.unsqueeze(0), c=c)
        torch.testing.assert_close(torch.acosh(1 + 2 * c * keys) / c ** 0.5, expected)


def _ulps(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """|value - reference| in units of the last place of ``reference`` (in value's dtype)."""
    rounded = reference.to(value.dtype)
    ulp = torch.nextafter(rounded, torch.full_like(rounded, math.inf)) - rounded
    return (value.double() - reference).abs() / ulp.double()


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 300), st.sampled_from([torch.float32, torch.float64]))
def test_arcosh_is_acosh_within_four_ulps(log10_excess, dtype):
    top = 37 if dtype == torch.float32 else 300
    z = 1 + torch.tensor([10.0 ** (min(log10_excess, top) - 15)], dtype=torch.float64)
    z = z.to(dtype)  # the argument as the dtype holds it; the truth from it in float64
    assert _ulps(geometry.poincare.arcosh(z), torch.acosh(z.double())).item() <= 4


def test_arcosh_at_one_and_near_the_floor():
    for dtype in (getattr(torch, name) for name in DTYPES):
        assert geometry.poincare.arcosh(torch.ones(1, dtype=dtype)).item() == 0
        z = torch.tensor([1 + 1e-12, 1 + 1e-6, 2.0, 1e30], dtype=torch.float64).to(dtype)
        assert (_ulps(geometry.poincare.arcosh(z), torch.acosh(z.double())) <= 4).all()
        z.requires_grad_(True)
        geometry.poincare.arcosh(z[1:]).sum().backward()
        exact = z.detach()[1:].double()
        torch.testing.assert_close(z.grad[1:].double(), 1 / torch.sqrt((exact - 1) * (exact + 1)),
                                   rtol=1e-4, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_nearest_keys_are_the_row_distance_keys(dtype, seed):
    dtype = getattr(torch, dtype)
    x = points(200, 7, c=0.5, dtype=dtype, seed=seed, near_boundary=seed % 2 == 1)
    codebook = points(31, 7, c=0.5, dtype=dtype, seed=seed + 9, near_boundary=seed % 2 == 0)
    keys = geometry.poincare.nearest_keys(x, codebook, c=0.5)
    expected = geometry.distance_keys(x, codebook, c=0.5, across_rows=False)
    # equal up to cancellation in ‖x‖² + ‖v‖² - 2⟨x, v⟩, which both share
    scale = (x.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(-1)) / (
        1 - 0.5 * codebook.pow(2).sum(-1))
    tolerance = 64 * torch.finfo(dtype).eps * scale
    assert ((keys - expected).abs() <= tolerance).all()
    assert torch.equal(PoincareBall(0.5).nearest(x, codebook), row_argmin(expected)) or (
        _distance_at(x, codebook, PoincareBall(0.5).nearest(x, codebook))
        - _distance_at(x, codebook, row_argmin(expected))).abs().max() < 1e3 * torch.finfo(dtype).eps


def _distance_at(x, codebook, codes):
    return geometry.dist(x, codebook[codes], c=0.5)
