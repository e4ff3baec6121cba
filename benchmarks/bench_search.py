"""Nearest-code search, both geometries, in one run:
  ours        ``manifold.nearest``: distance keys from one matrix product, in chunks of about
              SEARCH_KEYS keys, each row's least key by NumPy's argmin,
  before      the same keys in chunks of 65,536 rows with torch's min (the code before chunks
              were sized by keys),
  naive       the (n × s × dim) reference of the tests (at the smallest size only: it is slow).
Prints milliseconds, items/s and the speed-ups, and checks that all give the same codes.

Usage: python benchmarks/bench_search.py
"""

import torch
from _common import best_time

from hrqtok import geometry
from hrqtok.geometry import Euclidean, PoincareBall
from tests.reference import nearest_codes_naive

SIZES = ((8192, 256, 32), (65536, 256, 32), (65536, 1024, 32))  # items, codes, dimensions
OLD_CHUNK = 65536


def before(manifold, x, codebook):
    return torch.cat([manifold.distance_keys(chunk, codebook, across_rows=False).min(dim=-1).indices
                      for chunk in x.split(OLD_CHUNK)])


torch.manual_seed(0)
print(f"torch threads: {torch.get_num_threads()}")
for n, s, dim in SIZES:
    for c in (1.0, None):
        x = geometry.project(torch.randn(n, dim) * 0.1, c=1.0)
        codebook = geometry.project(torch.randn(s, dim) * 0.1, c=1.0)
        manifold = PoincareBall(c) if c else Euclidean()
        codes = manifold.nearest(x, codebook)
        assert torch.equal(codes, before(manifold, x, codebook)), "the codes changed"
        fast = best_time(lambda: manifold.nearest(x, codebook))
        old = best_time(lambda: before(manifold, x, codebook))
        line = (f"{'poincare ' if c else 'euclidean'} n={n:6d} s={s:5d} dim={dim}: "
                f"ours {fast * 1e3:7.2f} ms ({n / fast:11,.0f} items/s), before {old * 1e3:7.2f} ms: "
                f"{old / fast:4.2f}x")
        if n == SIZES[0][0]:
            naive = best_time(lambda: nearest_codes_naive(x, codebook, c=c), repeat=2)
            agree = (codes == nearest_codes_naive(x, codebook, c=c)[0]).float().mean()
            line += f"; naive {naive * 1e3:8.2f} ms: {naive / fast:5.1f}x, same codes {agree:.2%}"
        print(line)
