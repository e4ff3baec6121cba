"""What a level choice is: how one level of the residual walk holds its codes and picks one.

A level choice owns each level's parameters (registered on the quantizer under the names of
``parameter_lists``, which are the state-dict keys of saved models) and answers:
- ``points(level)``: the (size, dim) code points, differentiable in the parameters;
- ``choose(level, r, points)``: each residual's code at inference (no gradients);
- ``costs(level, r, points)``: (n, size) costs whose row argmin is ``choose``'s code, for
  balanced assignment;
- ``pick(level, r, points, training, choose)``: forward()'s choice, made with ``choose`` (the
  quantizer's: nearest or balanced) where it does not sample, returning (codes, e_i for the
  loss, e_i for the reconstruction y);
- ``set_codes(level, points, index)``: put codes at given points (k-means, revival).
``differentiable`` says whether y carries gradients to the choice (HyperVQ's MLR),
``temperature`` is the sampling temperature the training loop anneals (None: no sampling) and
``refit_from`` the first level that the refit after training (``--refit-deep-codes``) refits.
"""

from __future__ import annotations

import torch
from torch import Tensor


def plain(points: Tensor) -> Tensor:
    """A codebook's values as a plain tensor: geoopt's tensor subclass makes every operation
    on it go through __torch_function__, which doubles the cost of a search."""
    return points.detach().as_subclass(torch.Tensor)
