"""Encoder/decoder building blocks: Euclidean MLPs and hyperbolic (Möbius) MLPs.

Hyperbolic layers follow Ganea et al. (2018, §3.2): a Möbius matrix-vector product, a Möbius
bias on the ball, and nonlinearities applied in the tangent space at the origin. Since
W ⊗ x = exp0(W log0(x)) (their Eq. 27), a Möbius ReLU followed by a Möbius linear layer is
exp0(W relu(log0(y))) ⊕ b: ``MobiusMLP`` runs the pair so, one exponential and one logarithm
map fewer per hidden layer, and it runs each layer's exp0, bias and projection, with the next
ReLU's log0, as one step with a closed-form backward (``ball_autograd.mobius_layer``). Neither
changes the weights or what they compute.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hrqtok.geometry import (
    MIN_NORM,
    Euclidean,
    Manifold,
    PoincareBall,
    max_norm,
    mobius_matvec,
)
from hrqtok.geometry.ball_autograd import mobius_layer


class MobiusLinear(nn.Module):
    """y = (W ⊗_c x) ⊕_c b; W is Euclidean, b is a point of the ball (a ManifoldParameter)."""

    def __init__(self, in_dim: int, out_dim: int, *, ball: PoincareBall):
        super().__init__()
        self.ball = ball
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default
        self.bias = ball.parameter(torch.zeros(out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.ball.add(mobius_matvec(self.weight, x, c=self.ball.c), self.bias)

    def from_tangent(self, v: Tensor, *, tangent: bool = False,
                     scale: Tensor | None = None) -> Tensor:
        """The layer applied to exp0(v): exp0(W v) ⊕ b, without the round trip through the
        ball; with ``tangent``, log0 of that (what a Möbius ReLU after it takes). ``scale``
        (n, 1): v's rows are scaled by it first."""
        u = v @ self.weight.transpose(0, 1)
        return mobius_layer(u if scale is None else u * scale, self.bias, c=self.ball.c,
                            tangent=tangent)


class MobiusReLU(nn.Module):
    """ReLU through the tangent space at the origin: exp0(relu(log0(x)))."""

    def __init__(self, *, ball: PoincareBall):
        super().__init__()
        self.ball = ball

    def forward(self, x: Tensor) -> Tensor:
        return self.ball.expmap0(torch.relu(self.ball.logmap0(x)))


class MobiusMLP(nn.Sequential):
    """Möbius linear layers with Möbius ReLUs between them (``build_mlp``); the work between two
    matrix products (exp0, the bias, the projection, then the ReLU's log0) runs as one step,
    ``MobiusLinear.from_tangent``. It computes what the layers run one by one compute, to float
    rounding; near the boundary it is the more precise of the two, as the round trip through the
    ball takes an artanh of a norm close to 1."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        if not all(isinstance(m, MobiusLinear) for m in layers[::2]) or not all(
                isinstance(m, MobiusReLU) for m in layers[1::2]) or len(layers) % 2 == 0:
            raise TypeError("a MobiusMLP alternates Möbius linear layers and Möbius ReLUs")

    def forward(self, x: Tensor) -> Tensor:
        """The MLP on points x of the ball; the first layer's W ⊗ x is exp0(W log0(x))."""
        return self._run(self[0].ball.logmap0(x))

    def to_tangent(self, x: Tensor) -> Tensor:
        """log0 of the MLP's output on points x (a decoder's last step), in the same step as
        the last layer."""
        return self._run(self[0].ball.logmap0(x), tangent=True)

    def from_tangent(self, v: Tensor) -> Tensor:
        """The MLP applied to exp0(v), a tangent vector at the origin (an input): the first layer
        takes v as the round trip through the ball would leave it, its length capped where
        exp0 reaches the ball's boundary margin, and skips the trip."""
        first = self[0]
        c = first.ball.c
        cap = math.atanh(math.sqrt(c) * max_norm(c=c, dtype=v.dtype)) / math.sqrt(c)
        # W (k v) = k (W v): the cap scales the first product's narrower rows, not the input's
        length = torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(MIN_NORM)
        return self._run(v, scale=(cap / length).clamp_max(1.0))

    def _run(self, v: Tensor, *, tangent: bool = False, scale: Tensor | None = None) -> Tensor:
        """Linear, (ReLU, linear)*: each hidden layer's output stays a tangent vector at the
        origin, the ReLU acts on it and the next layer's exp0 takes it. With ``tangent`` the
        last layer's output is one too; ``scale`` (n, 1) multiplies the rows of v."""
        linears = list(self)[::2]
        for i, layer in enumerate(linears):
            last = i == len(linears) - 1
            v = layer.from_tangent(v, tangent=tangent or not last,
                                   scale=scale if i == 0 else None)
            if not last:
                v = torch.relu(v)
        return v


# (linear layer, activation) of each manifold's MLPs
LAYERS = {
    Euclidean: (lambda d_in, d_out, manifold: nn.Linear(d_in, d_out), lambda manifold: nn.ReLU()),
    PoincareBall: (lambda d_in, d_out, manifold: MobiusLinear(d_in, d_out, ball=manifold),
                   lambda manifold: MobiusReLU(ball=manifold)),
}


def build_mlp(dims: list[int], *, manifold: Manifold) -> nn.Sequential:
    """Linear layers dims[0] -> dims[1] -> … with ReLU between them (none after the last), on
    ``manifold``: hyperbolic MLPs take and return points of the ball."""
    linear, activation = LAYERS[type(manifold)]
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(activation(manifold))
        layers.append(linear(d_in, d_out, manifold))
    return MobiusMLP(*layers) if isinstance(manifold, PoincareBall) else nn.Sequential(*layers)
