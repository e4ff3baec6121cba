"""The optimisers (hrqtok.fit.optimizers): SplitAdam's fused Adam on the flat weights and
RiemannianAdam on the ball's points make the steps geoopt's RiemannianAdam makes on all of them
(it is Adam where the space is flat); StackedRiemannianAdam makes geoopt's steps (to the bit
where flat, to rounding on a ball); dead-code revival still finds every moment."""

from __future__ import annotations

import geoopt
import pytest
import torch

from hrqtok.config import ModelConfig
from hrqtok.fit.optimizers import SplitAdam, StackedRiemannianAdam, on_a_curved_manifold
from hrqtok.fit.revival import revive_dead_codes
from hrqtok.store.model_dir import build_model


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_split_steps_match_riemannian_adam_on_every_parameter(geometry):
    torch.manual_seed(0)
    config = ModelConfig(geometry=geometry, input_dim=24, hidden_dims=(16,), latent_dim=4,
                         levels=2, codebook_size=8)
    reference, split = build_model(config), build_model(config)
    split.load_state_dict(reference.state_dict())
    optimisers = (geoopt.optim.RiemannianAdam(reference.parameters(), lr=1e-2),
                  SplitAdam(split.parameters(), lr=1e-2))
    x = torch.nn.functional.normalize(torch.randn(64, 24), dim=-1)
    for _ in range(20):
        for model, optimiser in zip((reference, split), optimisers):
            out = model(x, quantize=True)
            optimiser.zero_grad()
            out.loss.backward()
            optimiser.step()
    curved = [name for name, p in split.named_parameters() if on_a_curved_manifold(p)]
    assert bool(curved) == (geometry == "hyperbolic")  # biases and codebooks on the ball
    for (name, a), b in zip(reference.named_parameters(), split.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
        assert b.abs().sum() > 0


def test_state_holds_the_moments_of_both_kinds_of_parameter():
    flat = torch.nn.Parameter(torch.ones(3, 2))
    ball = geoopt.ManifoldParameter(torch.full((3, 2), 0.1), manifold=geoopt.PoincareBall())
    optimiser = SplitAdam([flat, ball], lr=0.1)
    assert [type(o) for o in optimiser.optimizers] == [torch.optim.Adam, StackedRiemannianAdam]
    (flat.sum() + ball.pow(2).sum()).backward()
    optimiser.step()
    for parameter in (flat, ball):
        moments = [v for v in optimiser.state[parameter].values()
                   if torch.is_tensor(v) and v.shape == parameter.shape]
        assert len(moments) == 2 and all(m.abs().sum() > 0 for m in moments)
    optimiser.zero_grad()
    assert flat.grad is None and ball.grad is None


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_revived_codes_lose_their_moments(geometry):
    torch.manual_seed(0)
    model = build_model(ModelConfig(geometry=geometry, input_dim=24, hidden_dims=(16,),
                                    latent_dim=4, levels=2, codebook_size=8))
    optimiser = SplitAdam(model.parameters(), lr=1e-2)
    x = torch.nn.functional.normalize(torch.randn(64, 24), dim=-1)
    out = model(x, quantize=True)
    out.loss.backward()
    optimiser.step()
    [codebook] = list(model.quantizer.level_parameters(0))
    moments = [v for v in optimiser.state[codebook].values()
               if torch.is_tensor(v) and v.shape == codebook.shape]
    assert len(moments) == 2 and all(m[1:].abs().sum() > 0 for m in moments)
    before = [m.clone() for m in moments]
    details = model.quantizer.details(model.latents(x))
    details.codes[:, 0] = 0  # every code of level 0 but the first is dead
    revived = revive_dead_codes(model.quantizer, details, optimiser)
    assert revived[0] == 7
    for moment, kept in zip(moments, before):
        assert moment[1:].abs().sum() == 0 and torch.equal(moment[0], kept[0])


def _points(shape, dtype, seed, manifold):
    g = torch.Generator().manual_seed(seed)
    data = 0.3 * torch.randn(shape, generator=g, dtype=dtype)
    if manifold is None:
        return torch.nn.Parameter(data)
    return geoopt.ManifoldParameter(manifold.projx(data), manifold=manifold)


def _parameter_sets(dtype):
    """Three codebooks on a ball, a bias on a ball of another curvature, flat weights of two
    shapes: four stacks, one of them a single parameter."""
    ball, other = geoopt.PoincareBall(c=1.0), geoopt.PoincareBall(c=2.0)
    specs = [((16, 5), ball), ((16, 5), ball), ((16, 5), ball), ((5,), other), ((4, 3), None),
             ((4, 3), None), ((7,), None)]
    return [[_points(shape, dtype, i, manifold) for i, (shape, manifold) in enumerate(specs)]
            for _ in range(2)]


@pytest.fixture(params=["compiled", "columns"])
def ball_step(request, monkeypatch):
    """The ball's closed-form step by the compiled loop (the CPU's) or by the column chain."""
    import hrqtok.fit.optimizers as optimizers

    monkeypatch.setattr(optimizers, "COMPILED", request.param == "compiled")
    return request.param


@pytest.mark.usefixtures("ball_step")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stacked_steps_equal_geoopts(dtype):
    """Flat stacks take geoopt's own operations: equal to the bit. Stacks on a ball take the
    closed-form step: equal to rounding, which the moments' transport amplifies by its
    conditioning (its denominator is about (1 - c‖x‖²)², small near the boundary)."""
    reference, stacked = _parameter_sets(dtype)
    optimisers = (geoopt.optim.RiemannianAdam(reference, lr=0.05),
                  StackedRiemannianAdam(stacked, lr=0.05))
    assert len(optimisers[1].stacks) == 4
    for step in range(12):
        for parameters, optimiser in zip((reference, stacked), optimisers):
            optimiser.zero_grad()
            # a pull towards a moving target; on some steps two members get no gradient
            # (geoopt then leaves them and their step count alone)
            for i, p in enumerate(parameters):
                if step % 4 == 3 and i in (1, 5):
                    continue
                target = torch.full_like(p, 0.1 * ((step + i) % 5) - 0.2)
                (p - target).pow(2).sum().backward()
            optimiser.step()
        for i, (a, b) in enumerate(zip(reference, stacked)):
            _assert_same_step(a, b, msg=(step, i))
    for a, b in zip(reference, stacked):
        for key, value in optimisers[0].state[a].items():
            other = optimisers[1].state[b][key]
            if torch.is_tensor(value):
                _assert_same_step(value, other, on_ball=on_a_curved_manifold(a), msg=key)
            else:
                assert value == other, key


def _assert_same_step(expected, actual, *, on_ball=None, msg=None):
    on_ball = on_a_curved_manifold(expected) if on_ball is None else on_ball
    if not on_ball:
        assert torch.equal(expected, actual), msg
    elif expected.dtype == torch.float64:
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-13, msg=msg)
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6, msg=msg)


def test_stacked_state_is_a_view_that_revival_can_reset():
    _, parameters = _parameter_sets(torch.float64)
    optimiser = StackedRiemannianAdam(parameters[:3], lr=0.05)
    assert optimiser.state == {}
    for p in parameters[:3]:
        p.pow(2).sum().backward()
    optimiser.step()
    moment = optimiser.state[parameters[1]]["exp_avg"]
    assert moment.abs().sum() > 0
    moment[2:] = 0
    assert optimiser.stacks[0].exp_avg[1, 2:].abs().sum() == 0
    assert optimiser.stacks[0].exp_avg[1, :2].abs().sum() > 0
    optimiser.zero_grad()
    assert all(p.grad is None for p in parameters[:3])


@pytest.mark.usefixtures("ball_step")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vectors_of_different_lengths_step_as_one_padded_stack(dtype):
    """Möbius biases of an MLP: one stack, rows padded with zeros that stay zero; each vector
    gets geoopt's update (to rounding)."""
    ball = geoopt.PoincareBall(c=1.0)
    shapes = [(12,), (5,), (9,), (12,)]
    reference, stacked = ([_points(shape, dtype, i, ball) for i, shape in enumerate(shapes)]
                          for _ in range(2))
    optimisers = (geoopt.optim.RiemannianAdam(reference, lr=0.05),
                  StackedRiemannianAdam(stacked, lr=0.05))
    [stack] = optimisers[1].stacks
    assert stack.exp_avg.shape == (4, 12) and stack.lengths == [12, 5, 9, 12]
    for step in range(15):
        for parameters, optimiser in zip((reference, stacked), optimisers):
            optimiser.zero_grad()
            for i, p in enumerate(parameters):
                (p - 0.1 * ((step + i) % 5) + 0.2).pow(2).sum().backward()
            optimiser.step()
    for a, b in zip(reference, stacked):
        _assert_same_step(a, b)
        for key in ("exp_avg", "exp_avg_sq"):
            _assert_same_step(optimisers[0].state[a][key], optimisers[1].state[b][key], on_ball=True)
    assert stack.exp_avg[1, 5:].abs().sum() == 0 and stack.exp_avg[2, 9:].abs().sum() == 0


@pytest.mark.usefixtures("ball_step")
@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_closed_form_ball_step_is_geoopts_away_from_the_boundary(c):
    """Where the transport is well conditioned the closed form is geoopt's step to a few ulps,
    over many steps: a wrong term in the retraction or the transport shows at once."""
    ball = geoopt.PoincareBall(c=c)
    g = torch.Generator().manual_seed(3)
    start = ball.projx(0.15 / c**0.5 * torch.randn(3, 40, 6, generator=g, dtype=torch.float64))
    reference, stacked = ([geoopt.ManifoldParameter(p.clone(), manifold=ball) for p in start]
                          for _ in range(2))
    optimisers = (geoopt.optim.RiemannianAdam(reference, lr=0.01),
                  StackedRiemannianAdam(stacked, lr=0.01))
    targets = 0.2 / c**0.5 * torch.randn(3, 40, 6, generator=g, dtype=torch.float64)
    for step in range(25):
        for parameters, optimiser in zip((reference, stacked), optimisers):
            optimiser.zero_grad()
            for p, target in zip(parameters, targets):
                (p - target * (1 + step % 3)).pow(2).sum().backward()
            optimiser.step()
    for a, b in zip(reference, stacked):
        assert a.norm(dim=-1).max() * c**0.5 < 0.9
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(optimisers[1].state[b]["exp_avg"],
                                   optimisers[0].state[a]["exp_avg"], rtol=1e-11, atol=1e-15)


def test_closed_form_ball_step_runs_the_same_on_tensor_columns(monkeypatch):
    """The CPU's compiled loop, the NumPy columns and, as off the CPU, tensor columns: the same
    step."""
    import hrqtok.fit.optimizers as optimizers
    from hrqtok.geometry.columns import TensorMath

    ball = geoopt.PoincareBall(c=1.5)
    start = ball.projx(0.4 * torch.randn(2, 30, 4, generator=torch.Generator().manual_seed(5),
                                         dtype=torch.float64))
    runs = []
    for path in ("compiled", "numpy", "tensors"):
        with monkeypatch.context() as patch:
            patch.setattr(optimizers, "COMPILED", path == "compiled")
            if path == "tensors":
                patch.setattr(optimizers, "to_columns", lambda tensor: (tensor, TensorMath))
            parameters = [geoopt.ManifoldParameter(p.clone(), manifold=ball) for p in start]
            optimiser = StackedRiemannianAdam(parameters, lr=0.02)
            for step in range(10):
                optimiser.zero_grad()
                for p in parameters:
                    (p - 0.3 * (step % 3) + 0.2).pow(3).sum().backward()
                optimiser.step()
            runs.append([p.detach().clone() for p in parameters]
                        + [optimiser.state[p]["exp_avg"].clone() for p in parameters])
    for compiled_run, numpy_run, tensor_run in zip(*runs):
        torch.testing.assert_close(tensor_run, numpy_run, rtol=1e-12, atol=1e-15)
        # the loop sums in another order (and fuses multiply-adds): rounding, which the
        # transport's conditioning near the boundary amplifies, as against geoopt above
        torch.testing.assert_close(compiled_run, numpy_run, rtol=1e-10, atol=1e-13)
