"""Balanced code assignment (--balance sinkhorn): near-uniform usage, close to the optimal
balanced assignment (scipy's Hungarian algorithm as the slow reference), deterministic, and
wired through every quantizer, k-means, the CLI and the API."""

import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import hrqtok
from hrqtok.config import ModelConfig
from hrqtok.geometry import Euclidean, PoincareBall
from hrqtok.quantize import balance as sinkhorn
from hrqtok.quantize.balance import balanced_assignment
from hrqtok.quantize.build import build_quantizer
from hrqtok.quantize.kmeans import kmeans
from tests.conftest import SEEDS, clustered_vectors
from tests.test_cli import run
from tests.test_geometry import points


def _optimal_balanced_cost(costs: np.ndarray) -> float:
    """The least total cost with every code used exactly n/s times (Hungarian algorithm)."""
    n, s = costs.shape
    rows, slots = linear_sum_assignment(np.repeat(costs, n // s, axis=1))
    return float(costs[rows, slots // (n // s)].sum())


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_usage_is_near_uniform_and_the_cost_near_optimal(seed):
    g = torch.Generator().manual_seed(seed)
    x, codes = torch.randn(256, 4, generator=g) * 2, torch.randn(16, 4, generator=g)
    x[:128] = x[:128] * 0.1 + codes[0]  # half the items crowd one code
    costs = Euclidean().squared_distances(x, codes)
    assigned = balanced_assignment(costs)
    usage = torch.bincount(assigned, minlength=16)
    assert usage.tolist() == [16] * 16  # n/s each, exactly
    nearest_usage = torch.bincount(costs.argmin(1), minlength=16)
    assert nearest_usage.max() > 2 * usage.max()  # nearest codes are far from balanced here
    chosen = float(costs[torch.arange(256), assigned].sum())
    assert chosen <= 1.1 * _optimal_balanced_cost(costs.double().numpy())
    assert torch.equal(balanced_assignment(costs), assigned)  # deterministic
    shifted = costs + torch.randn(256, 1, generator=g) * 10  # per-row constants change nothing
    assert (balanced_assignment(shifted) == assigned).float().mean() > 0.99


@pytest.mark.parametrize("seed", SEEDS[:8])
def test_scaled_sinkhorn_gives_the_log_domain_codes(seed):
    # the fast matrix-vector iteration against the log-sum-exp one (the slow reference)
    g = torch.Generator().manual_seed(seed)
    n, s = [(300, 16), (1000, 64), (97, 8), (2048, 256)][seed % 4]
    costs = torch.cdist(torch.randn(n, 6, generator=g), torch.randn(s, 6, generator=g)) ** 2
    c = costs.double() - costs.double().min(dim=1, keepdim=True).values
    log_kernel = -c / (sinkhorn.SINKHORN_EPSILON * float(c.std()))
    fast = sinkhorn._scaled_sinkhorn(log_kernel, sinkhorn.SINKHORN_ITERS)
    slow = sinkhorn._log_sinkhorn(log_kernel, sinkhorn.SINKHORN_ITERS)
    # equal up to a per-row constant, to rounding
    torch.testing.assert_close(fast - fast[:, :1], slow - slow[:, :1], rtol=0, atol=1e-6)
    assert torch.equal(sinkhorn.capacity_rounding(fast), sinkhorn.capacity_rounding(slow))


def test_scalings_out_of_range_fall_back_to_the_log_domain(monkeypatch):
    costs = torch.rand(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = balanced_assignment(costs)
    overflowed = []

    def overflowing(log_kernel, iters):
        overflowed.append(True)
        return torch.full_like(log_kernel, float("inf"))

    monkeypatch.setattr(sinkhorn, "_scaled_sinkhorn", overflowing)
    assert torch.equal(balanced_assignment(costs), expected) and overflowed


def test_an_already_balanced_nearest_assignment_is_kept():
    codes = torch.eye(8) * 5
    x = codes.repeat(10, 1) + torch.randn(80, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    costs = Euclidean().squared_distances(x, codes)
    assert torch.equal(balanced_assignment(costs), costs.argmin(1))
    assert balanced_assignment(torch.zeros(0, 8)).shape == (0,)
    assert balanced_assignment(torch.ones(3, 8)).shape == (3,)
    uneven = balanced_assignment(torch.randn(50, 8, generator=torch.Generator().manual_seed(1)))
    assert torch.bincount(uneven, minlength=8).max() <= 7  # ceil(50 / 8)


@pytest.mark.parametrize("quantizer", ["hrq", "rq", "hypervq"])
def test_a_balanced_quantizer_uses_its_codes_uniformly(quantizer):
    config = ModelConfig(input_dim=6, hidden_dims=(), latent_dim=6, levels=2, codebook_size=8,
                         quantizer=quantizer, balance="sinkhorn")
    q = build_quantizer(config).double()
    x = points(400, 6, c=1.0, dtype=torch.float64, seed=2) * 0.6
    x[:300] = x[:300] * 0.05  # most items near the origin
    q.initialise(x, iters=5, generator=torch.Generator().manual_seed(0))
    q.eval()
    codes = q.encode(x)
    for level in range(2):
        usage = torch.bincount(codes[:, level], minlength=8)
        assert usage.tolist() == [50] * 8, (level, usage)
    assert torch.equal(q.encode(x), codes)
    with pytest.raises(ValueError, match="beam"):
        q.encode(x, beam=4)


@pytest.mark.parametrize("manifold", [Euclidean(), PoincareBall(1.0)])
def test_balanced_kmeans_gives_equal_clusters(manifold):
    x = points(300, 3, c=1.0, dtype=torch.float64, seed=4) * 0.8
    x[:200] *= 0.1
    fitted = kmeans(x, 10, manifold=manifold, iters=10, generator=torch.Generator().manual_seed(0),
                    balanced=True)
    assigned = balanced_assignment(manifold.squared_distances(x, fitted.centroids))
    usage = torch.bincount(assigned, minlength=10)
    assert usage.tolist() == [30] * 10
    plain = kmeans(x, 10, manifold=manifold, iters=10, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(manifold.nearest(x, plain.centroids), minlength=10).max() > usage.max()


def test_cli_balance_is_stored_and_repeatable(tmp_path, vector_items):
    args = ["--embedding-field", "vec", "--quantizer", "rq-kmeans", "--levels", "2",
            "--codebook-size", "8", "--balance", "sinkhorn", "-q"]
    assert run("fit", vector_items, "--model", tmp_path / "a", *args).exit_code == 0
    assert run("fit", vector_items, "--model", tmp_path / "b", *args).exit_code == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["model"]["balance"] == "sinkhorn"
    assert (tmp_path / "a" / "tokens.parquet").read_bytes() == (tmp_path / "b" / "tokens.parquet").read_bytes()
    encoded = run("encode", vector_items, "--model", tmp_path / "a", "--out", "-", "-q")
    fitted = run("encode", "--model", tmp_path / "a", "--out", "-", "-q")
    assert encoded.stdout == fitted.stdout  # the same items encoded together: the same codes
    refused = run("encode", vector_items, "--model", tmp_path / "a", "--beam", "4", "--out", "-")
    assert refused.exit_code == 2 and "balanced" in refused.stderr
    assert run("fit", vector_items, "--model", tmp_path / "c", *args[:-3], "--balance", "even").exit_code == 2


def test_api_balance_keyword():
    x = clustered_vectors()
    plain = hrqtok.Tokenizer.fit(x, quantizer="rq-kmeans", levels=2, codebook_size=8)
    balanced = hrqtok.Tokenizer.fit(x, quantizer="rq-kmeans", levels=2, codebook_size=8,
                                    balance="sinkhorn")
    assert balanced.model_config.balance == "sinkhorn"
    spread = lambda tok: np.bincount(tok.table.codes[:, 1], minlength=8).max()  # noqa: E731
    assert spread(balanced) <= spread(plain)


def test_sinkhorn_last_balances_only_the_last_level():
    x = torch.from_numpy(clustered_vectors(n=240, dim=8, seed=3))
    fits = {}
    for balance in ("none", "sinkhorn-last"):
        config = ModelConfig(input_dim=8, hidden_dims=(), latent_dim=8, levels=2, codebook_size=6,
                             quantizer="rq-kmeans", balance=balance)
        q = build_quantizer(config)
        q.fit_kmeans(x, iters=10, generator=torch.Generator().manual_seed(0))
        fits[balance] = q.encode(x)
    assert torch.equal(fits["none"][:, 0], fits["sinkhorn-last"][:, 0])  # level 0 as before
    assert torch.bincount(fits["sinkhorn-last"][:, 1], minlength=6).tolist() == [40] * 6
