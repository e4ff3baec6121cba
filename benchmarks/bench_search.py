"""Nearest-code search: closed form (one matrix product + per-code scale) vs the naive
(n × s × dim) reference, both geometries. Prints seconds, items/s and the speed-up."""

import torch
from _common import best_time

from hrqtok import geometry
from hrqtok.geometry import Euclidean, PoincareBall
from tests.reference import nearest_codes_naive

torch.manual_seed(0)
n, s, dim = 8192, 256, 32
for c in (1.0, None):
    x = geometry.project(torch.randn(n, dim) * 0.1, c=1.0)
    codebook = geometry.project(torch.randn(s, dim) * 0.1, c=1.0)
    manifold = PoincareBall(c) if c else Euclidean()
    fast = best_time(lambda: manifold.nearest(x, codebook))
    naive = best_time(lambda: nearest_codes_naive(x, codebook, c=c), repeat=2)
    agree = (manifold.nearest(x, codebook) == nearest_codes_naive(x, codebook, c=c)[0]).float().mean()
    name = "poincare " if c else "euclidean"
    print(f"{name} n={n} s={s} dim={dim}: closed form {fast * 1e3:7.2f} ms ({n / fast:,.0f} items/s), "
          f"naive {naive * 1e3:8.2f} ms; speed-up {naive / fast:5.1f}x; same codes {agree:.2%}")
