"""HyperVQ levels, residual k-means in both geometries, and the geometry they add: each checked
against geoopt or a direct computation, plus the invariants the issue names (code vectors on
the ball, a differentiable Gumbel path, k-means never raising its objective, beam >= greedy)."""

import json
import math

import geoopt.manifolds.stereographic.math as gmath
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hrqtok import geometry
from hrqtok.config import QUANTIZERS, ModelConfig, TrainConfig, from_dict, to_dict
from hrqtok.fit.items import fit_model
from hrqtok.geometry import Euclidean, PoincareBall
from hrqtok.models.autoencoder import ResidualKMeans, build_model
from hrqtok.quantize.build import build_quantizer
from hrqtok.quantize.hypervq import MLRGumbel
from hrqtok.quantize.kmeans import kmeans
from hrqtok.store.tables import read_table
from tests.conftest import DTYPES, SEEDS, clustered_vectors
from tests.test_cli import run
from tests.test_geometry import points

EXACT = dict(rtol=1e-9, atol=1e-10)


def hypervq(levels=2, size=8, dim=5, seed=0, dtype=torch.float64, code_point=""):
    torch.manual_seed(seed)
    config = ModelConfig(input_dim=dim, hidden_dims=(), latent_dim=dim, levels=levels,
                         codebook_size=size, quantizer="hypervq", code_point=code_point)
    return build_quantizer(config).to(dtype)


# --- geometry ------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_maps_at_a_point_and_midpoint_match_geoopt(c):
    k = torch.tensor(-c, dtype=torch.float64)
    # well inside the ball: near the boundary both libraries project, by different margins
    x, y = points(32, 6, c=c, dtype=torch.float64, seed=3) * 0.7, points(32, 6, c=c, dtype=torch.float64, seed=4)
    v = torch.randn(32, 6, dtype=torch.float64) * 0.1
    torch.testing.assert_close(geometry.expmap(x, v, c=c), gmath.expmap(x, v, k=k), **EXACT)
    torch.testing.assert_close(geometry.logmap(x, y, c=c), gmath.logmap(x, y, k=k), **EXACT)
    torch.testing.assert_close(geometry.expmap(x, geometry.logmap(x, y, c=c), c=c), y, **EXACT)
    groups = torch.arange(32) % 3
    mid = geometry.einstein_midpoint(x, groups, 3, c=c)
    for g in range(3):
        torch.testing.assert_close(mid[g], gmath.weighted_midpoint(x[groups == g], k=k, reducedim=[0]),
                                   **EXACT)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_mlr_logits_are_twice_norm_a_times_the_signed_distance_to_the_hyperplane(c):
    k = torch.tensor(-c, dtype=torch.float64)
    x = points(20, 4, c=c, dtype=torch.float64, seed=5)
    a = torch.randn(7, 4, dtype=torch.float64)
    r = torch.randn(7, dtype=torch.float64) * 0.6
    logits = geometry.mlr_logits(x, a, r, c=c)
    q = geometry.expmap0(r.unsqueeze(-1) * a / a.norm(dim=-1, keepdim=True), c=c)
    normal = a * (1 - c * q.pow(2).sum(-1, keepdim=True))  # a carried from 0 to q_k
    signed = gmath.dist2plane(x.unsqueeze(1), q, normal, k=k, signed=True)
    torch.testing.assert_close(logits, 2 * a.norm(dim=-1) * signed, **EXACT)
    # q_k lies on its own hyperplane
    torch.testing.assert_close(geometry.mlr_logits(q, a, r, c=c).diagonal(), torch.zeros(7, dtype=torch.float64),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_mirror_code_points_are_the_origins_mirror_image_in_their_hyperplane(c):
    """exp0(2 r â) lies on the normal geodesic through the hyperplane's point exp0(r â), as
    far beyond the hyperplane as the origin is before it: a reflection keeps the distance to
    the hyperplane and flips its side, so the MLR logit flips sign."""
    a = torch.randn(7, 4, dtype=torch.float64)
    r = torch.rand(7, dtype=torch.float64) * 0.8 + 0.05
    mirror = geometry.expmap0(2 * r.unsqueeze(-1) * a / a.norm(dim=-1, keepdim=True), c=c)
    at_mirror = geometry.mlr_logits(mirror, a, r, c=c).diagonal()
    at_origin = geometry.mlr_logits(torch.zeros(1, 4, dtype=torch.float64), a, r, c=c)[0]
    torch.testing.assert_close(at_mirror, -at_origin, rtol=1e-9, atol=1e-10)
    assert (at_origin < 0).all()


# --- HyperVQ ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("code_point,reach", [("mirror", 2.0), ("hyperplane", 1.0)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS[:10])
def test_hypervq_code_vectors_are_on_the_ball_and_are_r_times_unit_a(dtype, seed, code_point,
                                                                     reach):
    """Code k is exp0(reach · r_k â_k): its hyperplane's point (reach 1) or the origin's
    mirror image in the hyperplane (reach 2)."""
    q = hypervq(seed=seed, dtype=getattr(torch, dtype), code_point=code_point)
    with torch.no_grad():
        q.offsets[0].mul_(1e4)  # far past the boundary in the tangent space
    for level, (a, r) in enumerate(zip(q.normals, q.offsets)):
        codes = q.points(level).detach()
        assert torch.isfinite(codes).all()
        assert (codes.norm(dim=-1) < 1).all()
        if level:
            torch.testing.assert_close(geometry.logmap0(codes, c=1.0),
                                       reach * r.detach().unsqueeze(-1) * a.detach() / a.detach().norm(dim=-1, keepdim=True))


def test_hypervq_reconstruction_is_exact_when_the_last_residual_is_a_code():
    q = hypervq(levels=3, size=8)
    x = points(8, 5, c=1.0, dtype=torch.float64, seed=9) * 0.8
    codes = torch.stack([torch.randint(8, (8,)), torch.randint(8, (8,)), torch.arange(8)], -1)
    residual = x
    for level in range(2):
        residual = q.manifold.sub(residual, q.points(level).detach()[codes[:, level]])
    tangent = geometry.logmap0(residual, c=1.0)
    with torch.no_grad():  # code i of the last level := item i's last residual
        q.normals[2].copy_(tangent)
        q.offsets[2].copy_(tangent.norm(dim=-1) / q.choice.reach)
    torch.testing.assert_close(q.decode_codes(codes), x, rtol=1e-9, atol=1e-10)


def test_hypervq_encodes_by_the_mlr_argmax_and_initialises_a_voronoi_like_partition():
    q = hypervq(levels=2, size=6, dim=3)
    x = torch.from_numpy(clustered_vectors(n=300, dim=3, clusters=6, seed=1)).double() * 0.6
    q.initialise(x, iters=20, generator=torch.Generator().manual_seed(0))
    q.eval()
    codes = q.encode(x)
    torch.testing.assert_close(codes[:, 0], q.choice.logits(0, x).argmax(-1))
    assert len(codes[:, 0].unique()) == 6  # no level-0 code left dead by the initialisation
    # the argmax partition starts close to the nearest-centre partition it was built from,
    # and the (mirror) code points are its centres
    centres = geometry.logmap0(q.points(0).detach(), c=1.0)
    nearest = Euclidean().nearest(geometry.logmap0(x, c=1.0), centres)
    assert (nearest == codes[:, 0]).float().mean() > 0.9


def test_gumbel_straight_through_path_is_differentiable():
    q = hypervq(levels=2, size=8)
    x = (points(40, 5, c=1.0, dtype=torch.float64, seed=2) * 0.5).requires_grad_()
    q.initialise(x.detach(), iters=5, generator=torch.Generator().manual_seed(0))
    q.train()
    q.choice.temperature = 0.7
    out = q(x)
    # the reconstruction alone (no codebook loss) reaches the MLR parameters through the
    # soft one-hot choice, and x through the logits and the straight-through identity
    out.quantized.pow(2).sum().backward()
    for parameter in q.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # values are the hard choices: decode_codes of the sampled codes
    torch.testing.assert_close(out.quantized.detach(), q.decode_codes(out.codes).detach())


def test_gumbel_sampling_explores_and_sharp_logits_sample_the_argmax():
    q = hypervq(levels=1, size=8)
    x = points(400, 5, c=1.0, dtype=torch.float64, seed=3) * 0.5
    q.initialise(x, iters=5, generator=torch.Generator().manual_seed(0))
    q.train()
    torch.manual_seed(0)
    sampled = q(x).codes[:, 0]
    best = q.choice.logits(0, x).argmax(-1)
    assert 0 < (sampled != best).float().mean() < 0.5
    with torch.no_grad():
        q.normals[0].mul_(1e4)  # logit gaps far above the Gumbel noise
    assert torch.equal(q(x).codes[:, 0], q.choice.logits(0, x).argmax(-1))


def test_temperature_anneals_from_max_to_min():
    config = TrainConfig(temperature_max=2.0, temperature_min=0.5, temperature_decay=0.99)
    taus = [config.temperature(step) for step in range(400)]
    assert taus[0] == 2.0 and taus[-1] == 0.5
    assert all(b <= a for a, b in zip(taus, taus[1:]))
    with pytest.raises(ValueError):
        TrainConfig(temperature_min=3.0)


def test_hypervq_fit_learns_logs_temperature_and_stays_finite():
    vectors = torch.from_numpy(clustered_vectors(n=200, dim=16, seed=4))
    config = ModelConfig(input_dim=16, hidden_dims=(32,), latent_dim=6, levels=2,
                         codebook_size=8, quantizer="hypervq")
    result = fit_model(vectors, config, TrainConfig(epochs=8, warmup_epochs=2, batch_size=32,
                                                    temperature_decay=0.95))
    trained = [row for row in result.log if row["phase"] == "train"]
    taus = [row["temperature"] for row in trained]
    assert taus == sorted(taus, reverse=True) and taus[-1] < taus[0]
    assert all(math.isfinite(row["loss"]) for row in result.log)
    assert trained[-1]["reconstruction"] < result.log[0]["reconstruction"]
    assert isinstance(result.model.quantizer.choice, MLRGumbel)
    assert min(trained[-1]["utilisation"]) > 0.5
    for parameter in result.model.parameters():
        assert torch.isfinite(parameter).all()


# --- residual k-means ------------------------------------------------------------------------------
@pytest.mark.parametrize("geometry_name", ["euclidean", "frechet", "einstein"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS[:8])
def test_kmeans_never_raises_its_objective(geometry_name, dtype, seed):
    dtype = getattr(torch, dtype)
    manifold = Euclidean() if geometry_name == "euclidean" else PoincareBall(1.0)
    x = points(300, 4, c=1.0, dtype=dtype, seed=seed, near_boundary=seed % 2 == 1)
    fitted = kmeans(x, 12, manifold=manifold, iters=30, generator=torch.Generator().manual_seed(seed),
                    centroid="einstein" if geometry_name == "einstein" else "frechet")
    objective = np.array(fitted.objective)
    assert np.isfinite(objective).all() and torch.isfinite(fitted.centroids).all()
    assert (np.diff(objective) <= 1e-6 * objective[:-1]).all()
    assert objective[-1] < objective[0]
    if not manifold.flat:
        assert (fitted.centroids.norm(dim=-1) < 1).all()
    again = kmeans(x, 12, manifold=manifold, iters=30, generator=torch.Generator().manual_seed(seed),
                   centroid="einstein" if geometry_name == "einstein" else "frechet")
    assert torch.equal(again.centroids, fitted.centroids)


def test_frechet_centres_beat_einstein_midpoints_on_one_cluster():
    x = points(200, 3, c=1.0, dtype=torch.float64, seed=6) * 0.95
    groups = torch.zeros(200, dtype=torch.long)
    einstein = geometry.einstein_midpoint(x, groups, 1, c=1.0)
    from hrqtok.quantize.kmeans import _means
    frechet = _means(x, groups, einstein, PoincareBall(1.0), "frechet")
    cost = lambda m: geometry.dist(x, m, c=1.0).pow(2).sum()  # noqa: E731
    assert cost(frechet[0]) < cost(einstein[0])
    # at the Fréchet mean the Riemannian gradient, -2 Σ log_m(x_i), nearly vanishes
    assert geometry.logmap(frechet.expand_as(x), x, c=1.0).mean(0).norm() < 0.05
    # near the boundary a full Karcher step overshoots; kept steps never make it worse
    for seed in range(10):
        x = points(200, 3, c=1.0, dtype=torch.float64, seed=seed, near_boundary=True)
        einstein = geometry.einstein_midpoint(x, groups, 1, c=1.0)
        assert cost(_means(x, groups, einstein, PoincareBall(1.0), "frechet")[0]) <= cost(einstein[0])


@pytest.mark.parametrize("name", ["rq-kmeans", "hrq-kmeans"])
def test_residual_kmeans_fits_level_by_level_with_no_training(name):
    vectors = torch.from_numpy(clustered_vectors(n=150, dim=8, seed=2))
    config = ModelConfig(input_dim=8, hidden_dims=(), latent_dim=8, levels=3, codebook_size=6,
                         quantizer=name)
    result = fit_model(vectors, config, TrainConfig(kmeans_iters=40))
    model = result.model
    assert isinstance(model, ResidualKMeans) and result.best_epoch == 0
    assert [row["phase"] for row in result.log] == ["k-means"] * 3
    assert all(row["objective"] <= row["objective_start"] for row in result.log)
    assert float(model.scale) == pytest.approx(1.0, rel=1e-5)  # unit-norm inputs
    # level 0 is exactly k-means of the (mapped) inputs with the same generator (hyperbolic
    # k-means in float64)
    dtype = torch.float64 if name == "hrq-kmeans" else torch.float32
    first = kmeans(model.latents(vectors).to(dtype), 6, manifold=model.quantizer.manifold,
                   iters=40, generator=torch.Generator().manual_seed(0))
    codes = model.quantizer.codebooks[0].detach().as_subclass(torch.Tensor)
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes, first.centroids.float())
    # every level lowers the reconstruction error
    details = model.quantizer.details(model.latents(vectors))
    errors = [float(e.mean()) for e in details.errors]
    assert errors == sorted(errors, reverse=True)
    decoded = model.decode_codes(model.encode(vectors))
    assert torch.nn.functional.cosine_similarity(decoded, vectors).mean() > 0.8


@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_beam_search_never_reconstructs_worse_than_greedy(name):
    vectors = torch.from_numpy(clustered_vectors(n=120, dim=8, seed=5))
    kmeans = "kmeans" in name
    config = ModelConfig(input_dim=8, hidden_dims=() if kmeans else (16,),
                         latent_dim=8 if kmeans else 4, levels=3, codebook_size=6, quantizer=name)
    model = fit_model(vectors, config, TrainConfig(epochs=3, warmup_epochs=1, batch_size=32)).model
    latents = model.latents(vectors)
    q = model.quantizer
    error = lambda codes: q.distance(latents, q.decode_codes(codes))  # noqa: E731
    greedy, searched = model.encode(vectors), model.encode(vectors, beam=8)
    assert (error(searched) <= error(greedy) + 1e-6).all()


def test_configs_name_their_quantizer_and_old_configs_still_load():
    assert ModelConfig().quantizer == "hrq" and ModelConfig(geometry="euclidean").quantizer == "rq"
    old = to_dict(ModelConfig(geometry="euclidean"))
    del old["quantizer"]  # saved before quantizers had names
    assert from_dict(ModelConfig, old).quantizer == "rq"
    with pytest.raises(ValueError, match="hyperbolic space"):
        ModelConfig(geometry="euclidean", quantizer="hypervq")
    with pytest.raises(ValueError, match="input vectors"):
        ModelConfig(quantizer="rq-kmeans")  # has hidden layers
    assert isinstance(build_model(ModelConfig(input_dim=4, hidden_dims=(), latent_dim=4,
                                              quantizer="hrq-kmeans")), ResidualKMeans)


# --- the CLI -------------------------------------------------------------------------------------
SMALL = ["--levels", "2", "--codebook-size", "8", "--quiet", "--embedding-field", "vec"]
TRAINED = ["--latent-dim", "4", "--hidden-dims", "16", "--epochs", "4", "--warmup-epochs", "1",
           "--batch-size", "32"]


@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_every_quantizer_through_fit_encode_decode_inspect(tmp_path, vector_items, name):
    model = tmp_path / name
    extra = [] if "kmeans" in name else TRAINED
    result = run("fit", vector_items, "--model", model, "--quantizer", name, *SMALL, *extra, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["fit"]["quantizer"] == name
    config = json.loads((model / "config.json").read_text())
    assert config["model"]["quantizer"] == name and config["model"]["geometry"] == QUANTIZERS[name].geometry
    out = tmp_path / "tokens.parquet"
    assert run("encode", vector_items, "--model", model, "--out", out, "--beam", "4",
               "--quiet").exit_code == 0
    table = pq.read_table(out)
    assert table.num_rows == 120 and read_table(out).metadata["quantizer"] == name
    first = table.column("tokens")[0].as_py()
    decoded = run("decode", *first, "--model", model, "--tokens", out, "--vectors", "--quiet")
    row = json.loads(decoded.stdout)
    assert decoded.exit_code == 0 and row["id"] == "item000" and len(row["vector"]) == 16
    report = json.loads(run("inspect", "--model", model, "--json").stdout)
    assert report["model"]["quantizer"] == name and len(report["levels"]) == 2
    again = tmp_path / "again"
    run("fit", vector_items, "--model", again, "--quantizer", name, *SMALL, *extra)
    assert (again / "tokens.parquet").read_bytes() == (model / "tokens.parquet").read_bytes()


def _words(output: str) -> str:
    """Output with rich's error box and line wrapping taken out, for matching a message."""
    return " ".join(output.replace("│", " ").split())


@pytest.mark.parametrize("args, message", [
    (["--quantizer", "rq-kmeans", "--latent-dim", "4"], "input vectors"),
    (["--quantizer", "hrq-kmeans", "--hidden-dims", "8"], "input vectors"),
    (["--quantizer", "rq", "--geometry", "hyperbolic"], "euclidean space"),
    (["--quantizer", "hypervq", "--geometry", "euclidean"], "hyperbolic space"),
])
def test_contradictory_quantizer_options_exit_2(tmp_path, vector_items, args, message):
    result = run("fit", vector_items, "--model", tmp_path / "m", "--embedding-field", "vec", *args)
    assert result.exit_code == 2 and message in _words(result.output)
    assert not (tmp_path / "m").exists()


def test_hypervq_has_no_wordnet_mode(tmp_path):
    result = run("fit", "--wordnet", "--root", "mammal.n.01", "--quantizer", "hypervq",
                 "--model", tmp_path / "m")
    assert result.exit_code == 2 and "no decoder" in _words(result.output)
