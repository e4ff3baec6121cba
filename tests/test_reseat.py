"""Re-seating stuck nodes after the release (fit.reseat) and the worst rank it reads
(metrics.ranking.worst_ranks), against a brute-force ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrqtok import geometry
from hrqtok.config import HierarchyTrainConfig
from hrqtok.fit.hierarchy import fit_hierarchy
from hrqtok.fit.reseat import most_specific_hypernyms, reseat_stuck_nodes
from hrqtok.fit.tree_init import tree_start
from hrqtok.geometry import Euclidean, PoincareBall
from hrqtok.metrics.ranking import worst_ranks
from hrqtok.models.hierarchy import hierarchy_model_config
from hrqtok.sources.hierarchy import split_pairs, transitive_closure
from tests.conftest import tree_parents

PARENTS = tree_parents(branching=3, depth=3)  # 40 nodes, 102 closure pairs
PAIRS = transitive_closure(PARENTS)
MANIFOLDS = {"hyperbolic": PoincareBall(1.0), "euclidean": Euclidean()}


def _brute_worst(points, pairs, known, manifold):
    """Per hyponym of ``pairs``: max over its pairs of 1 + negatives closer (ties: half)."""
    d = manifold.dist(points[:, None, :], points[None, :, :]).numpy()
    ancestors: dict[int, set] = {}
    for u, v in known:
        ancestors.setdefault(int(u), set()).add(int(v))
    worst: dict[int, float] = {}
    for u, v in pairs:
        negative = np.ones(len(points), dtype=bool)
        negative[[int(u), *ancestors[int(u)]]] = False
        rank = 1 + (d[u][negative] < d[u, v]).sum() + 0.5 * (d[u][negative] == d[u, v]).sum()
        worst[int(u)] = max(worst.get(int(u), 0.0), rank)
    hyponyms = np.array(sorted(worst))
    return hyponyms, np.array([worst[u] for u in hyponyms])


@pytest.mark.parametrize("name", ["hyperbolic", "euclidean"])
@pytest.mark.parametrize("seed", range(3))
def test_worst_ranks_match_a_brute_force_ranking(name, seed):
    manifold = MANIFOLDS[name]
    generator = torch.Generator().manual_seed(seed)
    points = manifold.project(torch.randn(40, 3, generator=generator, dtype=torch.float64) * 0.4)
    points[7] = points[3]  # a tie: a negative exactly as far as a hypernym counts one half
    train = PAIRS[split_pairs(len(PAIRS), 0.3, seed=seed) == 0]
    hyponyms, worst = worst_ranks(points, train, PAIRS, manifold=manifold)
    expected_hyponyms, expected = _brute_worst(points, train, PAIRS, manifold)
    np.testing.assert_array_equal(hyponyms, expected_hyponyms)
    np.testing.assert_allclose(worst, expected)


def test_the_most_specific_hypernym_is_the_one_with_most_hypernyms():
    # 0 is the root, 1 its child, 2 a child of 1, 3 a child of 2 and also of 4 (a child of 0)
    pairs = np.array([[1, 0], [2, 1], [2, 0], [3, 2], [3, 1], [3, 0], [3, 4], [4, 0]])
    choice = most_specific_hypernyms(pairs, 6)
    assert choice.tolist() == [-1, 0, 1, 2, 0, -1]  # 5 has no hypernym
    # a tie between hypernyms with as many hypernyms goes to the lower id
    assert most_specific_hypernyms(np.array([[2, 1], [2, 0]]), 3).tolist() == [-1, -1, 0]


def test_a_stuck_leaf_is_moved_next_to_its_parent_and_nothing_else_moves():
    manifold = MANIFOLDS["hyperbolic"]  # where the tree layout ranks every hypernym well
    points = tree_start(PAIRS, 40, 4, curvature=1.0, generator=torch.Generator().manual_seed(0))
    hyponyms, worst = worst_ranks(points, PAIRS, PAIRS, manifold=manifold)
    limit = worst.max() + 1  # the layout ranks every hypernym near the top
    assert limit <= 5
    leaf, parent = 39, int(PARENTS[39][0])
    far = next(u for u in range(40) if PARENTS[u] and PARENTS[u][0] not in (parent, leaf)
               and u != leaf and np.isin(u, PAIRS[:, 0]) and len(PARENTS[u]) == 1
               and not np.any((PAIRS[:, 0] == leaf) & (PAIRS[:, 1] == PARENTS[u][0])))
    points[leaf] = points[far]  # the leaf sits in another subtree: its parent ranks badly
    _, stuck_worst = worst_ranks(points, PAIRS, PAIRS, manifold=manifold)
    assert stuck_worst[hyponyms == leaf].item() > limit
    before = points.clone()
    moved = reseat_stuck_nodes(points, PAIRS, PAIRS, manifold=manifold, max_rank=limit,
                               generator=torch.Generator().manual_seed(1))
    assert moved.tolist() == [leaf]
    others = torch.arange(40) != leaf
    assert torch.equal(points[others], before[others])
    # next to its parent (its most specific hypernym), a little further out
    assert manifold.dist(points[leaf], points[parent]) < 0.2 * manifold.dist(before[leaf],
                                                                               points[parent])
    assert points[leaf].norm() > points[parent].norm()
    geometry.check_on_ball(points, c=1.0)
    _, after = worst_ranks(points, PAIRS, PAIRS, manifold=manifold)
    assert after[hyponyms == leaf].item() <= limit


def _fit(rounds, release=20, quantizer="hrq"):
    test = split_pairs(len(PAIRS), 0.15, seed=0)
    config = HierarchyTrainConfig(epochs=40, burn_in_epochs=5, batch_size=16, negatives=10,
                                  negative_group=8, eval_every=0, seed=0, tune_epochs=0,
                                  quantize_weight=1.0, release_epochs=release,
                                  reseat_rounds=rounds, reseat_epochs=6, reseat_rank=2)
    model = hierarchy_model_config(latent_dim=4, levels=2, codebook_size=8, quantizer=quantizer,
                                   curvature=1.0, commitment=0.25)
    return fit_hierarchy(PAIRS, test, 40, model, config)


@pytest.mark.parametrize("quantizer", ["hrq", "rq"])
def test_rounds_follow_the_release_and_keep_the_multitokens(quantizer):
    plain, rounds = _fit(0, quantizer=quantizer), _fit(2, quantizer=quantizer)
    assert torch.equal(plain.codes, rounds.codes)  # fixed before the release
    release = [row for row in rounds.log if row["phase"] == "release"]
    assert len(release) == 20 + 2 * 6
    # each round starts by re-seating (its count in the log), with the rate from full again
    assert [i for i, row in enumerate(release) if "reseated" in row] == [20, 26]
    assert release[20]["reseated"] > 0  # rank 2 is strict enough that the tree has stuck nodes
    full = release[0]["learning_rate"]
    assert release[20]["learning_rate"] == release[26]["learning_rate"] == full
    assert all(row["quantization"] == 0 for row in release)
    assert torch.isfinite(rounds.model.embeddings).all()
    if quantizer == "hrq":
        geometry.check_on_ball(rounds.model.embeddings.detach(), c=1.0)


def test_no_rounds_without_a_release():
    result = _fit(2, release=0)
    assert not any(row["phase"] == "release" for row in result.log)


def test_forgotten_nodes_restart_their_step_size(monkeypatch):
    from hrqtok.fit import hierarchy

    forgotten = []
    monkeypatch.setattr(hierarchy, "reseat_stuck_nodes",
                        lambda *a, **k: np.array([3, 5]))
    forget = hierarchy.NodeSteps.forget
    monkeypatch.setattr(hierarchy.NodeSteps, "forget",
                        lambda self, nodes: forgotten.append(nodes.tolist()) or forget(self, nodes))
    result = _fit(1)
    assert forgotten == [[3, 5]]
    assert [row.get("reseated") for row in result.log if "reseated" in row] == [2]


def test_forget_zeroes_only_the_moved_nodes_step_memory():
    from hrqtok.fit.node_steps import NodeSteps

    steps = NodeSteps("rmsprop", 6, PoincareBall(1.0), max_length=1.0, rms_decay=0.9)
    steps.mean_square[:] = torch.arange(1.0, 7.0, dtype=torch.float64)
    steps.forget(np.array([1, 4]))
    assert steps.mean_square.tolist() == [1.0, 0.0, 3.0, 4.0, 0.0, 6.0]
    plain = NodeSteps("rsgd", 6, PoincareBall(1.0), max_length=1.0, rms_decay=0.9)
    plain.forget(np.array([1]))  # plain Riemannian SGD remembers nothing
    assert plain.mean_square is None


def test_config_checks_the_rounds():
    with pytest.raises(ValueError, match="re-seat rank"):
        HierarchyTrainConfig(reseat_rank=0.5)
    with pytest.raises(ValueError, match="epochs"):
        HierarchyTrainConfig(reseat_rounds=-1)
