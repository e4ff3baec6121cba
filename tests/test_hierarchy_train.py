"""Joint embedding + (H)RQ training on small synthetic trees: sampling, the sparse Riemannian
step against a dense reference, learning, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hrqtok import geometry
from hrqtok.config import HierarchyTrainConfig
from hrqtok.fit.hierarchy import HierarchyTraining, NegativeSampler, fit_hierarchy
from hrqtok.geometry import PoincareBall
from hrqtok.metrics.ranking import closure_ranking
from hrqtok.models.hierarchy import hierarchy_model_config
from hrqtok.sources.hierarchy import split_pairs, transitive_closure
from tests.conftest import tree_parents

PARENTS = tree_parents(branching=3, depth=3)  # 40 nodes, 102 closure pairs
PAIRS = transitive_closure(PARENTS)


def _model_config(geometry_name="hyperbolic", quantizer=None):
    quantizer = quantizer or {"hyperbolic": "hrq", "euclidean": "rq"}[geometry_name]
    return hierarchy_model_config(latent_dim=4, levels=2, codebook_size=8, quantizer=quantizer,
                                  curvature=1.0, commitment=0.25)


@pytest.mark.parametrize("seed", range(5))
def test_sampler_masks_every_hypernym_and_the_anchor(seed):
    sampler = NegativeSampler(40, PAIRS, 50, torch.Generator().manual_seed(seed))
    anchors = torch.from_numpy(PAIRS[:, 0]).view(-1, 6)  # 102 pairs
    negatives, masked = sampler.sample(anchors)
    assert negatives.shape == (17, 50) and masked.shape == (17, 6, 50)
    related = {(int(u), int(v)) for u, v in PAIRS}
    for g in range(17):
        for i, u in enumerate(anchors[g].tolist()):
            for k, n in enumerate(negatives[g].tolist()):
                assert bool(masked[g, i, k]) == ((u, n) in related or u == n)


def test_frequency_negatives_follow_the_train_hyponym_counts():
    """Burn-in's frequency sampler: each node in proportion to how often it is a train pair's
    hypernym; leaves never."""
    sampler = NegativeSampler(40, PAIRS, 50, torch.Generator().manual_seed(0))
    sampler.by_frequency = True
    negatives, _ = sampler.sample(torch.zeros(2000, 1, dtype=torch.long))
    drawn = np.bincount(negatives.reshape(-1).numpy(), minlength=40)
    hyponyms = np.bincount(PAIRS[:, 1], minlength=40)
    assert (drawn[hyponyms == 0] == 0).all() and (drawn[hyponyms > 0] > 0).all()
    expected = hyponyms / hyponyms.sum() * drawn.sum()
    assert np.abs(drawn - expected).max() < 5 * np.sqrt(expected.max())  # 100,000 draws
    sampler.by_frequency = False
    negatives, _ = sampler.sample(torch.zeros(2000, 1, dtype=torch.long))
    assert (np.bincount(negatives.reshape(-1).numpy(), minlength=40) > 0).all()


@pytest.mark.parametrize("negatives", ["uniform", "frequency"])
def test_only_burn_in_draws_by_frequency(monkeypatch, negatives):
    seen = []
    sample = NegativeSampler.sample
    monkeypatch.setattr(NegativeSampler, "sample",
                        lambda self, anchors: seen.append(self.by_frequency) or sample(self, anchors))
    config = HierarchyTrainConfig(epochs=2, burn_in_epochs=2, batch_size=51, negatives=5,
                                  negative_group=51, eval_every=0, tune_epochs=0,
                                  release_epochs=1, reseat_rounds=0,
                                  burn_in_negatives=negatives)
    fit_hierarchy(PAIRS, np.zeros(len(PAIRS), dtype=bool), 40, _model_config(), config)
    # 2 batches an epoch: burn-in, training, release
    assert seen == [negatives == "frequency"] * 4 + [False] * 4 + [False] * 2
    with pytest.raises(ValueError, match="burn-in negatives"):
        HierarchyTrainConfig(burn_in_negatives="hard")


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
def test_sparse_step_equals_dense_riemannian_sgd(geometry_name):
    config = HierarchyTrainConfig(batch_size=16, negatives=5, negative_group=4, max_step=1e9,
                                  node_optimizer="rsgd")
    from hrqtok.models.hierarchy import HierarchyModel

    model = HierarchyModel(_model_config(geometry_name), 40)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.embeddings.copy_(geometry.project(torch.randn(40, 4, generator=g, dtype=torch.float64) * 0.3, c=1.0))
    test = np.zeros(len(PAIRS), dtype=bool)
    loop = HierarchyTraining(model, PAIRS, test, config, torch.Generator().manual_seed(1), None)
    batch = torch.from_numpy(PAIRS[:16])
    # the dense reference: autograd over the whole table with the same negatives
    negatives, masked = NegativeSampler(40, PAIRS, 5, torch.Generator().manual_seed(1)).sample(
        batch[:, 0].view(4, 4))
    table = model.embeddings.detach().clone().requires_grad_()
    c = model.manifold.c if isinstance(model.manifold, PoincareBall) else None
    dist = (lambda a, b: geometry.dist(a, b, c=c)) if c else (lambda a, b: (a - b).norm(dim=-1))
    u, v = table[batch[:, 0]].view(4, 4, 4), table[batch[:, 1]].view(4, 4, 4)
    n = table[negatives]
    logits = torch.cat([-dist(u, v).unsqueeze(2),
                        (-dist(u.unsqueeze(2), n.unsqueeze(1))).masked_fill(masked, float("-inf"))], 2)
    torch.nn.functional.cross_entropy(logits.reshape(16, -1), torch.zeros(16, dtype=torch.long),
                                      reduction="sum").backward()
    before = table.detach().clone()
    if c is None:
        expected = before - 0.05 * table.grad
    else:  # Nickel & Kiela: x - lr (1 - |x|^2)^2 / 4 grad, inside the ball
        scale = (1 - before.pow(2).sum(-1, keepdim=True)).pow(2) / 4
        expected = geometry.project(before - 0.05 * scale * table.grad, c=c)
    loop.step(batch, 0.05, quantize=False)
    assert torch.allclose(model.embeddings, expected, atol=1e-10)


def _fit_tree(geometry_name, tune_epochs=5, burn_in_negatives="frequency", release_epochs=0,
              quantize_weight=HierarchyTrainConfig.quantize_weight, reseat_rounds=0):
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    config = HierarchyTrainConfig(epochs=100, burn_in_epochs=10, batch_size=16, negatives=10,
                                  learning_rate=0.1, negative_group=8, eval_every=0, seed=0,
                                  tune_epochs=tune_epochs, burn_in_negatives=burn_in_negatives,
                                  release_epochs=release_epochs, reseat_rounds=reseat_rounds,
                                  quantize_weight=quantize_weight)
    result = fit_hierarchy(PAIRS, test, 40, _model_config(geometry_name), config)
    score = closure_ranking(result.model.embeddings, {"train": PAIRS[~test]}, PAIRS,
                            manifold=result.model.manifold)["train"]
    return result, score


def test_training_learns_the_tree_and_the_ball_beats_euclidean_space():
    start = closure_ranking(
        torch.rand(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e-3,
        {"all": PAIRS}, PAIRS, manifold=PoincareBall(1.0))["all"]
    result, hyperbolic = _fit_tree("hyperbolic")
    _, euclidean = _fit_tree("euclidean")
    assert hyperbolic["map"] > 0.85 and hyperbolic["mean_rank"] < 1.5
    assert euclidean["map"] > start["map"] + 0.2
    assert hyperbolic["map"] > euclidean["map"] + 0.1  # trees fit the ball (4 dimensions)
    geometry.check_on_ball(result.model.embeddings, c=1.0)
    codes = result.codes
    assert codes.shape == (40, 2) and torch.isfinite(result.model.decode_codes(codes)).all()
    assert [row["phase"] for row in result.log] == ["burn-in"] * 10 + ["train"] * 100 + ["tune"] * 5
    assert result.pairs_per_second > 0


def test_same_seed_same_bytes():
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    config = HierarchyTrainConfig(epochs=4, burn_in_epochs=2, batch_size=16, negatives=5,
                                  negative_group=4, eval_every=2, seed=3)
    a = fit_hierarchy(PAIRS, test, 40, _model_config(), config)
    b = fit_hierarchy(PAIRS, test, 40, _model_config(), config)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert (a.codes == b.codes).all()


def test_no_nan_over_seeds_with_large_steps():
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    for seed in range(5):
        config = HierarchyTrainConfig(epochs=5, burn_in_epochs=1, batch_size=64, negatives=10,
                                      learning_rate=5.0, eval_every=0, seed=seed)
        result = fit_hierarchy(PAIRS, test, 40, _model_config(), config)
        assert torch.isfinite(result.model.embeddings).all()
        geometry.check_on_ball(result.model.embeddings, c=1.0)


def test_learning_rate_schedule_in_the_log():
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    config = HierarchyTrainConfig(epochs=5, burn_in_epochs=2, batch_size=32, negatives=5,
                                  learning_rate=0.2, burn_in_factor=0.05, final_factor=0.1,
                                  eval_every=0, release_epochs=3, reseat_rounds=1,
                                  reseat_epochs=2, tune_epochs=2, tune_learning_rate=0.5)
    log = fit_hierarchy(PAIRS, test, 40, _model_config(), config).log
    assert [row["learning_rate"] for row in log] == pytest.approx(
        [0.01, 0.01, 0.2, 0.155, 0.11, 0.065, 0.02, 0.2, 0.11, 0.02, 0.2, 0.02, 0.5, 0.5])
    assert [row["phase"] for row in log] == (["burn-in"] * 2 + ["train"] * 5 + ["release"] * 5
                                             + ["tune"] * 2)
    # the re-seating round starts with its own rate, once the release's 3 epochs are done
    assert ["reseated" in row for row in log].index(True) == 10


def test_a_step_never_moves_a_node_further_than_max_step():
    from hrqtok.models.hierarchy import HierarchyModel

    model = HierarchyModel(_model_config(), 40)
    with torch.no_grad():
        model.embeddings.copy_(geometry.project(
            torch.randn(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3, c=1.0))
    config = HierarchyTrainConfig(batch_size=102, negatives=20, max_step=1e-3)
    loop = HierarchyTraining(model, PAIRS, np.zeros(len(PAIRS), dtype=bool), config,
                             torch.Generator().manual_seed(0), None)
    before = model.embeddings.detach().clone()
    loop.step(torch.from_numpy(PAIRS), 100.0, quantize=False)  # the root is in 39 pairs
    moved = geometry.dist(before, model.embeddings.detach(), c=1.0)
    assert moved.max() <= 1.01e-3 and moved.max() > 0.9e-3


@pytest.mark.parametrize("weight,calls", [(0.0, 0), (0.1, 5 * 7)])
def test_the_quantizer_step_runs_only_with_a_quantize_weight(monkeypatch, weight, calls):
    """At W = 0 the (H)RQ term moves nothing, so it is not computed (5 epochs of 7 steps)."""
    seen = []
    step = HierarchyTraining.quantizer_step
    monkeypatch.setattr(HierarchyTraining, "quantizer_step",
                        lambda self, *a: seen.append(1) or step(self, *a))
    config = HierarchyTrainConfig(epochs=5, burn_in_epochs=1, batch_size=16, negatives=5,
                                  negative_group=4, eval_every=0, tune_epochs=0,
                                  quantize_weight=weight)
    result = fit_hierarchy(PAIRS, np.zeros(len(PAIRS), dtype=bool), 40, _model_config(), config)
    assert len(seen) == calls
    assert all((row["quantization"] > 0) == (weight > 0)
               for row in result.log if row["phase"] == "train")


@pytest.mark.parametrize("quantizer", ["hrq-kmeans", "rq-kmeans"])
def test_kmeans_quantizers_train_embeddings_alone_then_cluster_them(quantizer):
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    config = HierarchyTrainConfig(epochs=6, burn_in_epochs=2, batch_size=16, negatives=5,
                                  negative_group=4, eval_every=0, kmeans_iters=30, seed=0)
    result = fit_hierarchy(PAIRS, test, 40, _model_config(quantizer=quantizer), config)
    epochs, last = result.log[:-1], result.log[-1]
    assert "tune" not in [row.get("phase") for row in result.log]  # nothing to tune
    assert all(row["quantization"] == 0 for row in epochs)  # no (H)RQ loss while training
    assert last["phase"] == "k-means" and len(last["iterations"]) == 2
    # level 0 is a converged k-means of the final embeddings: each used code is the centre
    # of its nodes (the mean, or on the ball a point where Σ log_m(x_i) nearly vanishes)
    points = result.model.embeddings.detach()
    codebook = result.model.quantizer.codebooks[0].detach().as_subclass(torch.Tensor)
    assign = result.model.encode()[:, 0]
    for code in assign.unique():
        members = points[assign == code]
        if quantizer == "rq-kmeans":
            torch.testing.assert_close(codebook[code], members.mean(0))
        else:
            pull = geometry.logmap(codebook[code].expand_as(members), members, c=1.0).mean(0)
            assert pull.norm() < 0.05 * geometry.logmap(codebook[code].expand_as(members),
                                                         members, c=1.0).norm(dim=-1).mean() + 1e-9
    codes = result.model.encode()
    assert codes.shape == (40, 2) and torch.isfinite(result.model.decode_codes(codes)).all()


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
def test_the_release_moves_only_the_embeddings_and_undoes_the_pull(geometry_name):
    """Epochs after the multitokens are fixed train the nodes without the (H)RQ term: the
    multitokens and codebooks stay the joint training's, the embedding ranks better again."""
    pulled, pulled_score = _fit_tree(geometry_name, tune_epochs=0, quantize_weight=1.0)
    released, released_score = _fit_tree(geometry_name, tune_epochs=0, quantize_weight=1.0,
                                         release_epochs=30)
    assert torch.equal(pulled.codes, released.codes)
    for (name, a), (_, b) in zip(pulled.model.quantizer.state_dict().items(),
                                 released.model.quantizer.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(pulled.model.embeddings, released.model.embeddings)
    release = [row for row in released.log if row["phase"] == "release"]
    assert len(release) == 30 and all(row["quantization"] == 0 for row in release)
    assert not any("revived" in row for row in release)  # codebooks stay as the tokens need
    assert released_score["map"] > pulled_score["map"] + 0.05, (pulled_score, released_score)


def test_kmeans_quantizers_have_no_release():
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    config = HierarchyTrainConfig(epochs=3, burn_in_epochs=1, batch_size=16, negatives=5,
                                  eval_every=0, release_epochs=4, seed=0)
    result = fit_hierarchy(PAIRS, test, 40, _model_config(quantizer="hrq-kmeans"), config)
    assert "release" not in [row.get("phase") for row in result.log]


def _quantized_map(result, pairs):
    points = result.model.decode_codes(result.codes)
    return closure_ranking(points, {"train": pairs}, PAIRS, manifold=result.model.manifold)["train"]["map"]


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
def test_codebook_tuning_lifts_the_tokens_map_and_moves_no_node(geometry_name):
    # uniform burn-in, where the 0.05 margin was set: tuning starts after burn-in either way
    untuned, _ = _fit_tree(geometry_name, tune_epochs=0, burn_in_negatives="uniform")
    tuned, _ = _fit_tree(geometry_name, tune_epochs=40, burn_in_negatives="uniform")
    # the same joint training, then only the codebooks move
    assert torch.equal(untuned.model.embeddings, tuned.model.embeddings)
    assert torch.equal(untuned.codes, tuned.codes)
    assert not torch.equal(untuned.model.decode_codes(untuned.codes),
                           tuned.model.decode_codes(tuned.codes))
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    assert _quantized_map(tuned, PAIRS[~test]) > _quantized_map(untuned, PAIRS[~test]) + 0.05
    assert [row["phase"] for row in tuned.log].count("tune") == 40
    if geometry_name == "hyperbolic":
        for level in range(2):
            geometry.check_on_ball(tuned.model.quantizer.points(level).detach(), c=1.0)


@pytest.mark.parametrize("geometry_name", ["hyperbolic", "euclidean"])
def test_tuning_gradients_equal_autograd_of_the_ranking_loss(geometry_name):
    from hrqtok.fit.codebook_tuning import CodebookTuning
    from hrqtok.models.hierarchy import HierarchyModel

    model = HierarchyModel(_model_config(geometry_name), 40)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.embeddings.copy_(geometry.project(torch.randn(40, 4, generator=g, dtype=torch.float64) * 0.4, c=1.0))
    model.quantizer.initialise(model.embeddings.detach(), iters=5, generator=g)
    codes = model.encode()
    batch = torch.from_numpy(PAIRS[:24])
    tuning = CodebookTuning(model, codes, batch, NegativeSampler(40, PAIRS, 6, torch.Generator().manual_seed(5)),
                            batch_size=24, group=8, learning_rate=0.01, generator=torch.Generator())
    loss = tuning.gradients(batch)
    grads = [p.grad.clone() for p in model.quantizer.parameters()]
    # the reference: the loss written plainly, on points decoded once per pair end
    for p in model.quantizer.parameters():
        p.grad = None
    negatives, masked = NegativeSampler(40, PAIRS, 6, torch.Generator().manual_seed(5)).sample(batch[:, 0].view(3, 8))
    tied = (codes[batch[:, 0]].view(3, 8, 1, 2) == codes[negatives].view(3, 1, 6, 2)).all(-1)
    assert tied.any()  # the case the tuning leaves out of the softmax
    masked = masked | tied
    ball = isinstance(model.manifold, PoincareBall)
    dist = (lambda a, b: geometry.dist(a, b, c=1.0)) if ball else (lambda a, b: (a - b).norm(dim=-1))
    decode = lambda rows: model.quantizer.decode_codes(codes[rows])  # noqa: E731
    u, v = decode(batch[:, 0]).view(3, 8, 1, 4), decode(batch[:, 1]).view(3, 8, 1, 4)
    n = decode(negatives.reshape(-1)).view(3, 1, 6, 4)
    logits = torch.cat([-dist(u, v), (-dist(u, n)).masked_fill(masked, float("-inf"))], 2)
    reference = -torch.log_softmax(logits, 2)[..., 0].sum()
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-7)
    for ours, p in zip(grads, model.quantizer.parameters()):
        torch.testing.assert_close(ours, p.grad, rtol=1e-4, atol=1e-5)  # expanded distances round


@pytest.mark.parametrize("decay", [0.9, 0.99])
def test_the_configured_rms_decay_sets_the_first_step_length(decay):
    """rmsprop's first step of every touched node is lr / √(1 − node_rms_decay) long."""
    from hrqtok.models.hierarchy import HierarchyModel

    model = HierarchyModel(_model_config(), 40)
    with torch.no_grad():
        start = torch.randn(40, 4, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
        model.embeddings.copy_(geometry.project(start * 0.3, c=1.0))
    config = HierarchyTrainConfig(batch_size=102, negatives=20, max_step=1e9, node_rms_decay=decay)
    loop = HierarchyTraining(model, PAIRS, np.zeros(len(PAIRS), dtype=bool), config,
                             torch.Generator().manual_seed(0), None)
    before = model.embeddings.detach().clone()
    loop.step(torch.from_numpy(PAIRS), 1e-4, quantize=False)
    moved = geometry.dist(before, model.embeddings.detach(), c=1.0)
    touched = moved > 0
    assert touched.sum() > 30
    expected = torch.full_like(moved[touched], 1e-4 / math.sqrt(1 - decay))
    assert torch.allclose(moved[touched], expected, rtol=1e-2)
