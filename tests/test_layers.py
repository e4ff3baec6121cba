"""Hyperbolic MLPs (hrqtok.models.layers): MobiusMLP runs each Möbius ReLU and the linear layer
after it as exp0(W relu(log0 y)) ⊕ b. Against the layers run one by one (the reference), it
gives the same points and gradients, keeps the state-dict keys of saved models, and near the
boundary keeps the digits that the round trip through the ball loses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrqtok.geometry import PoincareBall, poincare
from hrqtok.models.layers import MobiusLinear, MobiusMLP, MobiusReLU, build_mlp


def one_by_one(mlp: MobiusMLP, x: torch.Tensor) -> torch.Tensor:
    return nn.Sequential.forward(mlp, x)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_pairs_give_the_layers_values_and_gradients(c, dtype):
    torch.manual_seed(0)
    ball = PoincareBall(c)
    mlp = build_mlp([24, 16, 12, 6], manifold=ball).to(dtype)
    assert isinstance(mlp, MobiusMLP)
    assert [type(m) for m in mlp] == [MobiusLinear, MobiusReLU, MobiusLinear, MobiusReLU,
                                      MobiusLinear]
    x = ball.expmap0(torch.randn(40, 24, dtype=dtype) * 0.5)
    grads = []
    for forward in (mlp.forward, lambda x: one_by_one(mlp, x)):
        mlp.zero_grad()
        inputs = x.clone().requires_grad_()
        y = forward(inputs)
        (y * torch.linspace(-1, 1, y.shape[1], dtype=dtype)).sum().backward()
        grads.append((y.detach(), inputs.grad, [p.grad.clone() for p in mlp.parameters()]))
    (fused, fused_x, fused_p), (reference, reference_x, reference_p) = grads
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fused, reference, **tol)
    torch.testing.assert_close(fused_x, reference_x, **tol)
    for a, b in zip(fused_p, reference_p):
        torch.testing.assert_close(a, b, **tol)


def test_state_dict_keys_are_the_sequential_ones():
    """Models saved when the encoder was a plain nn.Sequential of the same layers load."""
    mlp = build_mlp([8, 6, 4], manifold=PoincareBall(1.0))
    assert list(mlp.state_dict()) == list(nn.Sequential(*mlp).state_dict()) == [
        "0.weight", "0.bias", "2.weight", "2.bias"]


def _layer_float64(u: torch.Tensor, b: torch.Tensor, bound: float, *, tangent: bool):
    """exp0(u) ⊕ b with both projections to ``bound`` (float32's), then log0 if ``tangent``:
    the reference, computed in float64."""
    clip = lambda x: x * (bound / x.norm(dim=-1, keepdim=True)).clamp_max(1.0)  # noqa: E731
    n = u.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    r = clip(poincare.mobius_add(clip(torch.tanh(n) * u / n), b, c=1.0))
    if not tangent:
        return r
    m = r.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return torch.atanh(m) * r / m


def test_near_the_boundary_the_fused_step_keeps_its_digits():
    """Hidden points at the float32 boundary margin: the fused MLP (float32) is what the same
    layers compute in float64 with float32's margin, to float32 rounding, and no worse than the
    layers run one by one in float32, whose artanh of a norm near 1 loses digits."""
    torch.manual_seed(1)
    ball = PoincareBall(1.0)
    mlp = build_mlp([6, 5, 4], manifold=ball)
    with torch.no_grad():
        mlp[0].weight.mul_(100)  # hidden points at the margin
        mlp[2].weight.mul_(0.05)  # a short output, so that it is not clipped itself
    x = ball.expmap0(torch.randn(64, 6))
    assert (poincare.norm(mlp[0](x)) > 0.99).all()
    bound = poincare.max_norm(c=1.0, dtype=torch.float32)
    w0, b0, w2, b2 = (t.detach().double() for t in (mlp[0].weight, mlp[0].bias,
                                                    mlp[2].weight, mlp[2].bias))
    v = torch.relu(_layer_float64(poincare.logmap0(x.double(), c=1.0) @ w0.T, b0, bound,
                                  tangent=True))
    expected = _layer_float64(v @ w2.T, b2, bound, tangent=False)
    fused_error = (mlp(x).double() - expected).abs().max()
    assert fused_error < 1e-6
    assert fused_error <= (one_by_one(mlp, x).double() - expected).abs().max()


@pytest.mark.parametrize("scale", [0.3, 1.0, 50.0])
def test_an_input_tangent_vector_steps_in_without_the_round_trip(scale):
    """HRQVAE's encoder takes exp0 of the standardised input: from_tangent gives what exp0 then
    the layers give, also for inputs so long that exp0 lands on the boundary margin."""
    torch.manual_seed(2)
    ball = PoincareBall(1.0)
    mlp = build_mlp([24, 16, 6], manifold=ball)
    v = torch.randn(30, 24) * scale
    torch.testing.assert_close(mlp.from_tangent(v), one_by_one(mlp, ball.expmap0(v)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_decoder_returns_log0_of_its_output_in_its_last_step(dtype):
    torch.manual_seed(3)
    ball = PoincareBall(0.7)
    mlp = build_mlp([6, 9, 12], manifold=ball).to(dtype)
    x = ball.expmap0(torch.randn(20, 6, dtype=dtype))
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(mlp.to_tangent(x), ball.logmap0(one_by_one(mlp, x)), **tol)


def test_a_mobius_mlp_alternates_linear_layers_and_relus():
    ball = PoincareBall(1.0)
    linear, relu = MobiusLinear(4, 4, ball=ball), MobiusReLU(ball=ball)
    for layers in ([linear, linear], [relu, linear], [linear, relu]):
        with pytest.raises(TypeError, match="alternates"):
            MobiusMLP(*layers)
    assert len(MobiusMLP(linear, relu, MobiusLinear(4, 2, ball=ball))) == 3
