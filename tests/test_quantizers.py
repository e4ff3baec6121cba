import geoopt
import pytest
import torch

from hrqtok import geometry
from hrqtok.config import ModelConfig
from hrqtok.geometry import Euclidean, PoincareBall
from hrqtok.quantize import residual
from hrqtok.quantize.build import build_quantizer
from hrqtok.quantize.kmeans import inertia, kmeans
from hrqtok.quantize.nearest import NearestCode
from hrqtok.quantize.residual import ResidualQuantizer
from tests.conftest import SEEDS
from tests.reference import residual_quantize_naive
from tests.test_geometry import points


def hyperbolic(levels=3, size=16, dim=5, c=1.0, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    q = ResidualQuantizer(manifold=PoincareBall(c), choice=NearestCode, levels=levels,
                          codebook_size=size, dim=dim, commitment=0.25)
    for i, cb in enumerate(q.codebooks):
        cb.data = points(size, dim, c=c, dtype=dtype, seed=seed * 10 + i) * 0.5
    return q


def euclidean(levels=3, size=16, dim=5, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    q = ResidualQuantizer(manifold=Euclidean(), choice=NearestCode, levels=levels,
                          codebook_size=size, dim=dim, commitment=0.25)
    for cb in q.codebooks:
        cb.data = cb.data.to(dtype) * 30
    return q


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", SEEDS[:5])
def test_hrq_reconstruction_is_exact_when_last_residual_is_a_code(c, seed):
    q = hyperbolic(c=c, seed=seed)
    x = points(16, 5, c=c, dtype=torch.float64, seed=seed + 99) * 0.8
    details = q.details(x)
    # Put each item's last residual into the last codebook: the sum must give x back exactly.
    q.codebooks[-1].data[:] = details.residuals[-1]
    out = q(x)
    torch.testing.assert_close(out.quantized, x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(q.decode_codes(out.codes), x, rtol=1e-10, atol=1e-12)


def test_right_subtraction_would_not_be_exact():
    # The paper's r ⊖ e = r ⊕ (-e) with a left-nested sum is not exact: Möbius addition is not
    # associative. This guards the choice made in quantize/residual.py.
    c, x = 1.0, points(20, 5, c=1.0, dtype=torch.float64, seed=7) * 0.8
    e = points(20, 5, c=1.0, dtype=torch.float64, seed=8) * 0.8
    r = geometry.mobius_add(x, -e, c=c)
    assert not torch.allclose(geometry.mobius_add(e, r, c=c), x, atol=1e-6)
    left = geometry.mobius_add(-e, x, c=c)
    torch.testing.assert_close(geometry.mobius_add(e, left, c=c), x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["hyperbolic", "euclidean"])
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_fast_residual_loop_matches_reference(kind, seed):
    q = hyperbolic(seed=seed) if kind == "hyperbolic" else euclidean(seed=seed)
    x = points(40, 5, c=1.0, dtype=torch.float64, seed=seed + 5)
    out = q(x)
    codes, y = residual_quantize_naive(x, [cb.detach() for cb in q.codebooks],
                                       c=1.0 if kind == "hyperbolic" else None)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(q.decode_codes(out.codes), y, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(out.quantized, y, rtol=1e-9, atol=1e-11)


def test_loss_by_hand_and_straight_through():
    q = ResidualQuantizer(manifold=Euclidean(), choice=NearestCode, levels=1, codebook_size=2,
                          dim=2, commitment=0.25)
    q.codebooks[0].data = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    x = torch.tensor([[0.8, 1.0]], requires_grad=True)
    out = q(x)
    assert out.codes.tolist() == [[1]]
    # ||r - e||^2 = 0.04: codebook term 0.04 plus 0.25 * 0.04 commitment
    assert out.loss.item() == pytest.approx(0.05)
    (grad,) = torch.autograd.grad(out.quantized.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))  # straight-through: dy/dx = I
    out.loss.backward()
    assert q.codebooks[0].grad[1].tolist() == pytest.approx([0.4, 0.0])  # d/de ||r - e||^2


def test_hyperbolic_codebooks_are_manifold_parameters_on_the_ball():
    q = build_quantizer(ModelConfig(latent_dim=4, levels=2, codebook_size=8, curvature=2.0))
    assert q.manifold == PoincareBall(2.0)
    for cb in q.codebooks:
        assert isinstance(cb, geoopt.ManifoldParameter)
        assert cb.manifold.c.item() == pytest.approx(2.0)
        geometry.check_on_ball(cb, c=2.0)
    assert type(build_quantizer(ModelConfig(geometry="euclidean")).codebooks[0]) is torch.nn.Parameter


@pytest.mark.parametrize("kind", ["hyperbolic", "euclidean"])
def test_kmeans_initialisation_uses_every_code_and_revive_moves_codes(kind):
    q = hyperbolic(size=8) if kind == "hyperbolic" else euclidean(size=8)
    x = points(200, 5, c=1.0, dtype=torch.float64, seed=3) * 0.7
    q.initialise(x, iters=10, generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(q.encode(x)[:, 0])) == 8
    target = x[:2] * 0.5
    q.revive(1, torch.tensor([0, 5]), target)
    torch.testing.assert_close(q.codebooks[1].data[[0, 5]], q.manifold.project(target))


def test_kmeans_lowers_the_objective_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, 3) + 5 * i for i in range(4)])
    flat = Euclidean()

    def fit(points, k, iters, generator):
        return kmeans(points, k, manifold=flat, iters=iters, generator=generator).centroids

    start = fit(x, 4, 0, torch.Generator().manual_seed(1))
    end = fit(x, 4, 20, torch.Generator().manual_seed(1))
    assert inertia(x, end, manifold=flat) <= inertia(x, start, manifold=flat)
    assert inertia(x, end, manifold=flat) < 0.05 * inertia(x, x.mean(0, keepdim=True), manifold=flat)
    again = fit(x, 4, 20, torch.Generator().manual_seed(1))
    assert torch.equal(end, again)
    few = fit(x[:3], 8, 5, g)  # fewer points than clusters
    assert few.shape == (8, 3) and torch.isfinite(few).all()


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
def test_geodesic_loss_and_row_weights(geometry_name):
    config = ModelConfig(input_dim=4, hidden_dims=(), latent_dim=4, levels=2, codebook_size=8,
                         geometry=geometry_name, quantization_loss="geodesic")
    quantizer = build_quantizer(config).double()
    g = torch.Generator().manual_seed(0)
    x = geometry.project(torch.randn(30, 4, generator=g, dtype=torch.float64) * 0.6, c=1.0)
    quantizer.initialise(x, iters=5, generator=g)
    details = quantizer.details(x)
    gaps = sum(quantizer.distance(r, cb.detach()[details.codes[:, i]]).pow(2)
               for i, (r, cb) in enumerate(zip(details.residuals, quantizer.codebooks)))
    out = quantizer(x)
    assert out.loss.item() == pytest.approx((1 + config.commitment) * gaps.mean().item(), rel=1e-9)
    # a row with weight 3 counts like three copies of it
    weights = torch.ones(30, dtype=torch.float64)
    weights[0] = 3
    repeated = torch.cat([x, x[:1], x[:1]])
    assert quantizer(x, weights).loss.item() == pytest.approx(quantizer(repeated).loss.item(), rel=1e-9)


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
@pytest.mark.parametrize("c", [0.5, 2.0])
@pytest.mark.parametrize("near_boundary", [False, True])
@pytest.mark.parametrize("levels", [3, 4])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "tensors"])
def test_closed_form_loss_grads_match_autograd_through_forward(geometry_name, c, near_boundary,
                                                              levels, compiled, monkeypatch):
    monkeypatch.setattr(residual, "COMPILED", compiled)  # walk_kernels' loop, or tensor ops
    config = ModelConfig(input_dim=5, hidden_dims=(), latent_dim=5, levels=levels, codebook_size=16,
                         geometry=geometry_name, curvature=c, quantization_loss="geodesic")
    quantizer = build_quantizer(config).double()
    x = points(60, 5, c=c, dtype=torch.float64, seed=3, near_boundary=near_boundary)
    g = torch.Generator().manual_seed(1)
    quantizer.initialise(x, iters=5, generator=g)
    weights = torch.rand(60, generator=g, dtype=torch.float64) + 0.5
    # forward()'s residual chain projects a residual that lands past the float64 margin,
    # which cuts its radial gradient, and arcosh's floor cuts the gradient of a tiny
    # distance: compare on the rows where neither happens
    inside = torch.ones(60, dtype=torch.bool)
    if config.geometry == "hyperbolic":
        details = quantizer.details(x)
        for r, error in zip(details.residuals, details.errors):
            inside &= (r.norm(dim=-1) < geometry.max_norm(c=c, dtype=torch.float64)) & (error > 1e-3)
    assert inside.sum() >= 25  # deeper walks leave more tiny last-level distances
    x, weights = x[inside], weights[inside]
    if config.geometry == "hyperbolic":  # the Möbius form of d saturates this close to the boundary
        quantizer.distance = lambda a, b: geometry.dist_arcosh(a, b, c=c)
    reference_x = x.clone().requires_grad_()
    reference = quantizer(reference_x, weights)
    reference.loss.backward()
    fast = quantizer.loss_grads(x, weights)
    assert torch.equal(fast.codes, reference.codes)
    torch.testing.assert_close(fast.loss, reference.loss, rtol=1e-9, atol=0)
    # near the boundary autograd through the Möbius chain itself loses digits to cancellation
    tol = dict(rtol=1e-4, atol=1e-6) if near_boundary else dict(rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(fast.grad_x, reference_x.grad, **tol)
    for grad, codebook in zip(fast.grad_codebooks, quantizer.codebooks):
        torch.testing.assert_close(grad, codebook.grad, **tol)


@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
def test_prefixes_are_the_right_nested_sums_of_the_leading_codes(levels):
    """p_i = e_0 ⊕ (e_1 ⊕ (… ⊕ e_i)), what the commitment gradients measure from: the sum is
    not associative on the ball, so a shortcut that regroups it is wrong from 4 levels on."""
    quantizer = hyperbolic(levels=levels)
    g = torch.Generator().manual_seed(2)
    chosen = [geometry.project(torch.randn(7, 5, generator=g, dtype=torch.float64) * 0.4, c=1.0)
              for _ in range(levels)]
    for i, prefix in enumerate(quantizer.prefixes(chosen)):
        torch.testing.assert_close(prefix, quantizer.combine(chosen[:i + 1]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_compiled_loss_grads_equal_the_tensor_path(geometry_name, dtype, monkeypatch):
    """walk_kernels' loop against the tensor operations it replaces, at a WordNet step's
    shape (10-d, 3 × 256 codes, points out to the boundary): the same codes, values to
    rounding."""
    config = ModelConfig(input_dim=10, hidden_dims=(), latent_dim=10, levels=3,
                         codebook_size=256, geometry=geometry_name, curvature=1.0,
                         quantization_loss="geodesic")
    quantizer = build_quantizer(config).to(dtype)
    x = points(700, 10, c=1.0, dtype=dtype, seed=3, near_boundary=True)
    g = torch.Generator().manual_seed(1)
    quantizer.initialise(x, iters=5, generator=g)
    weights = torch.rand(700, generator=g, dtype=dtype) + 0.5
    out = {}
    for compiled in (True, False):
        monkeypatch.setattr(residual, "COMPILED", compiled)
        out[compiled] = quantizer.loss_grads(x, weights)
    fast, slow = out[True], out[False]
    assert torch.equal(fast.codes, slow.codes)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(fast.loss, slow.loss, rtol=rtol, atol=0)
    scale = slow.grad_x.abs().max()
    torch.testing.assert_close(fast.grad_x / scale, slow.grad_x / scale, rtol=0, atol=rtol)
    for a, b in zip(fast.grad_codebooks, slow.grad_codebooks):
        scale = b.abs().max()
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=rtol * 100)


def test_compiled_loss_grads_do_not_depend_on_the_thread_count():
    """Blocks of rows walk on numba's threads; the sums over rows come afterwards, in row
    order, so one thread and all of them give the same bytes."""
    import numba

    from hrqtok.quantize import walk_kernels

    config = ModelConfig(input_dim=10, hidden_dims=(), latent_dim=10, levels=3, codebook_size=64,
                         curvature=1.0, quantization_loss="geodesic")
    quantizer = build_quantizer(config).double()
    x = points(1000, 10, c=1.0, dtype=torch.float64, seed=4, near_boundary=True)
    quantizer.initialise(x, iters=3, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    out = []
    try:
        for count in (1, numba.config.NUMBA_NUM_THREADS):
            torch.set_num_threads(count)  # the loop runs on torch's thread count
            out.append(quantizer.loss_grads(x))
            assert numba.get_num_threads() == min(count, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(threads)
    one, many = out
    assert torch.equal(one.codes, many.codes) and torch.equal(one.grad_x, many.grad_x)
    assert one.loss.item() == many.loss.item()
    assert all(torch.equal(a, b) for a, b in zip(one.grad_codebooks, many.grad_codebooks))
    assert walk_kernels.BLOCK < len(x) // 2  # several blocks, so threads do share the rows


def test_closed_form_grads_refuse_the_coordinate_loss_on_the_ball():
    with pytest.raises(ValueError, match="geodesic"):
        hyperbolic().double().loss_grads(points(4, 5, c=1.0, dtype=torch.float64, seed=0))


def _exhaustive_errors(quantizer, x):
    """Every code path's reconstruction error, (n, s^k): the reference for beam search."""
    import itertools

    paths = torch.tensor(list(itertools.product(range(quantizer.codebook_size), repeat=quantizer.levels)))
    y = quantizer.decode_codes(paths)  # (s^k, dim)
    return torch.stack([quantizer.distance(x[i:i + 1], y) for i in range(len(x))])


@pytest.mark.parametrize("kind", ["hyperbolic", "euclidean"])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_beam_encoding_against_exhaustive_search(kind, seed):
    q = (hyperbolic(size=4, dim=3, seed=seed) if kind == "hyperbolic"
         else euclidean(size=4, dim=3, seed=seed))
    x = (points(64, 3, c=1.0, seed=seed + 50, dtype=torch.float64) if kind == "hyperbolic"
         else torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    every = _exhaustive_errors(q, x)
    error = lambda codes: q.distance(x, q.decode_codes(codes))  # noqa: E731
    greedy = q.encode(x)
    assert torch.equal(q.encode(x, beam=1), greedy)
    # a beam as wide as s^(k-1) keeps every path to the last level: exhaustive search
    torch.testing.assert_close(error(q.encode(x, beam=16)), every.min(1).values)
    assert (error(greedy) > every.min(1).values + 1e-9).any()  # greedy is not optimal here
    for beam in (2, 4, 8):
        assert (error(q.encode(x, beam=beam)) <= error(greedy) + 1e-12).all()  # never worse
