"""The ball's operations with closed-form backward passes (hrqtok.geometry.ball_autograd)
against autograd through the functional core (``poincare``, the reference): the same values
(to the bit where the forward runs the reference's ops) and the same gradients, inside the ball
and on its boundary margin, in float32 and float64, at several curvatures. Every test runs
twice: with the compiled row loops (``ball_kernels``, what the CPU runs) and with the NumPy
chain of columns they replaced; the loops are also held to that chain directly."""

from __future__ import annotations

import pytest
import torch

from hrqtok.geometry import PoincareBall, ball_autograd, columns, poincare

CURVATURES = [0.5, 1.0, 2.0]
# tangent lengths: near the origin, typical, and far enough that exp0 lands on the margin
SCALES = [1e-3, 0.5, 2.0, 40.0]
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-9, atol=1e-11)}


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def path(request, monkeypatch):
    monkeypatch.setattr(ball_autograd, "COMPILED", request.param == "compiled")
    return request.param


def _grads(fn, inputs: list[torch.Tensor], weights: torch.Tensor):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad((out * weights).sum(), leaves)


def _tangent(rows: int, dim: int, scale: float, dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(rows, dim, generator=generator, dtype=torch.float64) * scale / dim**0.5
    v[0] = 0  # the origin: the norm's floor
    return v.to(dtype)


def _reference_layer(u, b, c, tangent):
    y = poincare.project(poincare.mobius_add(poincare.expmap0(u, c=c), b, c=c), c=c)
    return poincare.logmap0(y, c=c) if tangent else y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", CURVATURES)
@pytest.mark.parametrize("scale", SCALES)
def test_radial_maps_and_sums_match_autograd(dtype, c, scale):
    v = _tangent(48, 12, scale, dtype, seed=0)
    x = poincare.expmap0(v, c=c)
    y = poincare.expmap0(_tangent(48, 12, scale, dtype, seed=1), c=c)
    weights = torch.randn(48, 12, generator=torch.Generator().manual_seed(2), dtype=dtype)
    cases = [
        (lambda v: ball_autograd.expmap0(v, c=c), lambda v: poincare.expmap0(v, c=c), [v]),
        (lambda x: ball_autograd.logmap0(x, c=c), lambda x: poincare.logmap0(x, c=c), [x]),
        (lambda a, b: ball_autograd.add(a, b, c=c),
         lambda a, b: poincare.project(poincare.mobius_add(a, b, c=c), c=c), [x, y]),
        # a bias broadcast over the rows
        (lambda a, b: ball_autograd.add(a, b, c=c),
         lambda a, b: poincare.project(poincare.mobius_add(a, b, c=c), c=c), [x, y[3]]),
    ]
    for number, (fast, reference, inputs) in enumerate(cases):
        value, grads = _grads(fast, inputs, weights)
        expected, expected_grads = _grads(reference, inputs, weights)
        if number < 2:  # exp0 and log0 run the reference's ops forward
            assert torch.equal(value, expected)
        torch.testing.assert_close(value, expected, **TOL[dtype])
        for grad, expected_grad in zip(grads, expected_grads):
            assert grad.shape == expected_grad.shape
            torch.testing.assert_close(grad, expected_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", CURVATURES)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bias_scale", [0.0, 0.3, 3.0])
@pytest.mark.parametrize("tangent", [False, True])
def test_mobius_layer_matches_autograd(dtype, c, scale, bias_scale, tangent):
    """The scalar-chain layer: values to rounding, gradients in u and b as autograd's. With a
    zero bias, a row whose exp0 reaches the boundary margin gives a sum exactly on the
    projection's bound, where rounding decides whether the projection acts: the bias's gradient
    is then not compared (u's is: a cut along u's own direction leaves it unchanged)."""
    u = _tangent(40, 10, scale, dtype, seed=3)
    b = poincare.expmap0(torch.randn(10, generator=torch.Generator().manual_seed(4),
                                     dtype=torch.float64) * bias_scale, c=c).to(dtype)
    weights = torch.randn(40, 10, generator=torch.Generator().manual_seed(5), dtype=dtype)
    value, grads = _grads(lambda u, b: ball_autograd.mobius_layer(u, b, c=c, tangent=tangent),
                          [u, b], weights)
    expected, expected_grads = _grads(lambda u, b: _reference_layer(u, b, c, tangent), [u, b],
                                      weights)
    # log0 at the margin divides by 1 - c‖y‖² (8e-3 in float32, 2e-5 in float64): rounding
    # grows with it there
    loose = {torch.float32: dict(rtol=2e-3, atol=2e-4), torch.float64: dict(rtol=1e-7, atol=1e-9)}
    tol = loose[dtype] if tangent and scale == 40.0 else TOL[dtype]
    torch.testing.assert_close(value, expected, **tol)
    torch.testing.assert_close(grads[0], expected_grads[0], **tol)
    bound = poincare.max_norm(c=c, dtype=dtype)
    on_bound = bias_scale == 0.0 and bool(
        (poincare.norm(poincare.expmap0(u, c=c)) >= bound * (1 - 1e-6)).any())
    if not on_bound:
        torch.testing.assert_close(grads[1], expected_grads[1], **tol)


def test_gradcheck_in_float64():
    """Finite differences, independent of the reference's autograd."""
    c = 1.3
    u = _tangent(6, 5, 1.5, torch.float64, seed=6)[1:].requires_grad_()
    b = poincare.expmap0(torch.randn(5, dtype=torch.float64) * 0.4, c=c).requires_grad_()
    x = poincare.expmap0(_tangent(6, 5, 1.0, torch.float64, seed=7)[1:], c=c).requires_grad_()
    for tangent in (False, True):
        assert torch.autograd.gradcheck(
            lambda u, b: ball_autograd.mobius_layer(u, b, c=c, tangent=tangent), (u, b))
    assert torch.autograd.gradcheck(lambda v: ball_autograd.expmap0(v, c=c), (u,))
    assert torch.autograd.gradcheck(lambda x: ball_autograd.logmap0(x, c=c), (x,))
    assert torch.autograd.gradcheck(lambda x, b: ball_autograd.add(x, b, c=c), (x, b))


def test_without_gradients_the_reference_runs():
    ball = PoincareBall(1.0)
    x = poincare.expmap0(_tangent(8, 4, 1.0, torch.float32, seed=8), c=1.0)
    with torch.no_grad():
        assert ball.add(x, x.flip(0)).grad_fn is None
    assert torch.equal(ball.sub(x, x.flip(0)),
                       poincare.project(poincare.mobius_add(-x.flip(0), x, c=1.0), c=1.0))


@pytest.mark.parametrize("tangent,exp0", [(False, True), (True, True), (False, False)])
def test_the_scalar_chain_is_the_same_in_numpy_and_in_torch(tangent, exp0):
    """On the CPU the layer's scalar chain runs in NumPy; on other devices the same code runs
    on tensors. Both give the same scalars and the same gradients (here on CPU tensors)."""
    generator = torch.Generator().manual_seed(9)
    u2 = torch.rand(64, 1, generator=generator, dtype=torch.float64) * 30
    u2[0] = 0
    ub = torch.randn(64, 1, generator=generator, dtype=torch.float64) * 0.5
    b2 = torch.tensor(0.4, dtype=torch.float64)
    d_alpha, d_beta = torch.randn(2, 64, 1, generator=generator, dtype=torch.float64)
    options = dict(c=1.5, limit=1 - 1e-15 if tangent else None)
    bound = poincare.max_norm(c=1.5, dtype=torch.float64)
    if not exp0:  # a sum of two points: norms inside the ball
        u2, ub = u2 / 100, ub / 10
    tensors = ball_autograd._layer_scalars(columns.TensorMath, u2, ub, b2, bound=bound,
                                           exp0=exp0, **options)
    arrays = ball_autograd._layer_scalars(columns.NumpyMath, u2.numpy(), ub.numpy(),
                                          b2.numpy(), bound=bound, exp0=exp0, **options)
    for key in ("alpha", "beta"):
        torch.testing.assert_close(tensors[key], torch.from_numpy(arrays[key]))
    grads = zip(ball_autograd._layer_scalar_grads(columns.TensorMath, tensors, d_alpha,
                                                  d_beta, **options),
                ball_autograd._layer_scalar_grads(columns.NumpyMath, arrays,
                                                  d_alpha.numpy(), d_beta.numpy(), **options))
    for from_tensors, from_arrays in grads:
        torch.testing.assert_close(from_tensors, torch.from_numpy(from_arrays))


def test_a_diverged_row_gives_nan_silently(recwarn):
    """A diverged batch: a row with an infinite coordinate comes out NaN, the other rows are
    untouched, and the NumPy chain raises no floating-point warnings (torch raises none)."""
    u = _tangent(6, 4, 1.0, torch.float32, seed=10)
    u[2, 0] = float("inf")  # NaNs arise in the chain (0·inf, inf - inf)
    u.requires_grad_()
    b = poincare.expmap0(torch.full((4,), 0.1), c=1.0).requires_grad_()
    out = ball_autograd.mobius_layer(u, b, c=1.0, tangent=True)
    out.sum().backward()
    assert torch.isnan(out[2]).all() and torch.isfinite(out[[0, 1, 3, 4, 5]]).all()
    assert torch.isfinite(u.grad[[0, 1, 3, 4, 5]]).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_dtype_without_a_numpy_twin_takes_the_tensor_chain():
    """bfloat16 has no NumPy dtype: its columns stay tensors, and the layer still runs."""
    u = _tangent(8, 4, 1.0, torch.float32, seed=11)
    b = poincare.expmap0(torch.full((4,), 0.1), c=1.0)
    expected = ball_autograd.mobius_layer(u, b, c=1.0, tangent=True)
    low = ball_autograd.mobius_layer(u.bfloat16().requires_grad_(), b.bfloat16(), c=1.0,
                                     tangent=True)
    low.sum().backward()
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["bias", "rows", "bias-exp0-tangent", "rows-tangent"])
@pytest.mark.parametrize("path", ["compiled"], indirect=True)  # it sets both paths itself
def test_the_compiled_loops_equal_the_numpy_chain(dtype, kind, monkeypatch, path):
    """The same layer and sums, value and gradients, by the compiled loops and by the NumPy
    chain: to float64 rounding in float64, and within float32 rounding in float32 (the loops
    sum in float64). Rows from the origin to far past the boundary margin."""
    c = 0.7
    u = torch.cat([_tangent(30, 9, scale, torch.float64, seed=20 + i)
                   for i, scale in enumerate(SCALES)]).to(dtype)
    other = poincare.expmap0(_tangent(len(u), 9, 1.0, torch.float64, seed=30), c=c).to(dtype)
    b = other[5] if kind.startswith("bias") else other
    exp0 = kind in ("bias", "bias-exp0-tangent")
    tangent = kind.endswith("tangent")
    if not exp0:  # a Möbius sum takes points of the ball
        u = poincare.expmap0(u, c=c)
    weights = torch.randn(u.shape, generator=torch.Generator().manual_seed(31), dtype=dtype)
    results = {}
    for compiled in (True, False):
        monkeypatch.setattr(ball_autograd, "COMPILED", compiled)
        results[compiled] = _grads(lambda u, b: ball_autograd._Combination.apply(
            u, b, c, exp0, tangent, True), [u, b], weights)
    (value, grads), (expected, expected_grads) = results[True], results[False]
    # near the margin log0 divides by 1 - c‖y‖² (8e-3 in float32, 2e-5 in float64), as in the
    # tests above: rounding grows with it there
    tol = {(torch.float64, False): dict(rtol=1e-12, atol=1e-13),
           (torch.float64, True): dict(rtol=1e-10, atol=1e-11),
           (torch.float32, False): dict(rtol=1e-4, atol=1e-5),
           (torch.float32, True): dict(rtol=2e-3, atol=2e-4)}[dtype, tangent]
    torch.testing.assert_close(value, expected, **tol)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, **tol)


@pytest.mark.parametrize("path", ["compiled"], indirect=True)
def test_training_runs_the_loops_and_inference_the_chain(monkeypatch, path):
    """A step with gradients runs the compiled loops, forward and backward; without gradients
    the same layer runs the column chain (the values encode always had) and the loops are not
    called."""
    from hrqtok.geometry import ball_kernels

    calls = []
    for name in ("combination_forward", "combination_backward"):
        real = getattr(ball_kernels, name)
        monkeypatch.setattr(ball_kernels, name,
                            lambda *args, _real=real, _name=name: calls.append(_name) or _real(*args))
    u = _tangent(16, 6, 0.5, torch.float32, seed=40)
    b = poincare.expmap0(torch.full((6,), 0.1), c=1.0).requires_grad_()
    with torch.no_grad():
        inference = ball_autograd.mobius_layer(u, b, c=1.0, tangent=True)
    assert calls == []
    trained = ball_autograd.mobius_layer(u.requires_grad_(), b, c=1.0, tangent=True)
    trained.sum().backward()
    assert calls == ["combination_forward", "combination_backward"]
    torch.testing.assert_close(trained.detach(), inference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["compiled"], indirect=True)
def test_inference_never_imports_numba(path):
    """numba takes about a second to import: commands that only encode, decode or inspect do
    not pay it."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from hrqtok.config import ModelConfig\n"
            "from hrqtok.models.autoencoder import HRQVAE\n"
            "model = HRQVAE(ModelConfig(geometry='hyperbolic', input_dim=8, latent_dim=3,"
            " hidden_dims=(4,))).eval()\n"
            "model.encode(torch.randn(5, 8)); model.decode_codes(torch.zeros(5, 3, dtype=torch.long))\n"
            "import hrqtok.cli\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
