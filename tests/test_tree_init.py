"""The hierarchical start of WordNet-mode embeddings (fit.tree_init, `fit --init tree`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hrqtok.config import HierarchyTrainConfig
from hrqtok.fit.hierarchy import fit_hierarchy
from hrqtok.fit.tree_init import tree_depths, tree_parents, tree_start
from hrqtok.geometry import PoincareBall
from hrqtok.metrics.ranking import closure_ranking
from hrqtok.models.hierarchy import hierarchy_model_config
from hrqtok.sources.hierarchy import split_pairs, topological_order, transitive_closure
from tests.conftest import tree_parents as complete_tree


def random_dag(draw_parents: list[list[int]]) -> list[list[int]]:
    """Node i's parents among 0..i-1 (a DAG with multiple inheritance)."""
    return [sorted({p % i for p in ps}) if i else [] for i, ps in enumerate(draw_parents)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), max_size=3), min_size=1, max_size=40),
       st.floats(0.05, 0.95), st.integers(0, 5))
def test_tree_parent_is_the_nearest_train_hypernym_and_forms_a_forest(raw, keep, seed):
    parents = random_dag(raw)
    closure = transitive_closure(parents, topological_order(parents))
    train = closure[np.random.default_rng(seed).random(len(closure)) < keep]
    chosen = tree_parents(train, len(parents))
    counts = np.bincount(train[:, 0], minlength=len(parents))
    for node in range(len(parents)):
        hypernyms = train[train[:, 0] == node, 1]
        if not len(hypernyms):
            assert chosen[node] == -1
            continue
        assert chosen[node] in hypernyms  # only train pairs are read
        assert counts[chosen[node]] == counts[hypernyms].max()
    depth = tree_depths(chosen)  # raises on a cycle
    has = chosen >= 0
    assert (depth[has] == depth[chosen[has]] + 1).all() and (depth[~has] == 0).all()


def test_start_puts_each_node_beyond_its_parent_in_a_narrowing_cone():
    parents = complete_tree(branching=3, depth=4)
    closure = transitive_closure(parents)
    points = tree_start(closure, len(parents), 5, curvature=1.0,
                        generator=torch.Generator().manual_seed(0))
    ball = PoincareBall(1.0)
    assert points.dtype == torch.float64
    assert torch.equal(ball.project(points), points)  # inside the ball's margin
    radius = ball.dist0(points)
    chosen = tree_parents(closure, len(parents))
    child = torch.from_numpy(np.flatnonzero(chosen >= 0))
    parent = torch.from_numpy(chosen[child.numpy()])
    assert (radius[child] > radius[parent] + 1.5).all()
    cos = torch.nn.functional.cosine_similarity(points[child], points[parent], dim=1)
    deep = torch.from_numpy(tree_depths(chosen)[child.numpy()] >= 2)
    assert (cos[deep] > 0.5).all()  # children of non-roots stay near their parent's direction
    # the start alone already ranks ancestors far above chance on this tree
    scores = closure_ranking(points, {"train": closure}, closure, manifold=ball)["train"]
    assert scores["map"] > 0.5


def test_euclidean_start_spaces_depths_by_the_radial_step():
    parents = complete_tree(branching=2, depth=3)
    closure = transitive_closure(parents)
    points = tree_start(closure, len(parents), 4, curvature=None,
                        generator=torch.Generator().manual_seed(0))
    depth = tree_depths(tree_parents(closure, len(parents)))
    np.testing.assert_allclose(points.norm(dim=1).numpy(), 2.0 * depth, atol=1e-12)


def short_fit_map(init: str) -> float:
    parents = complete_tree(branching=3, depth=3)
    pairs = transitive_closure(parents)
    test = split_pairs(len(pairs), 0.15, 0)
    config = HierarchyTrainConfig(epochs=30, burn_in_epochs=5, batch_size=16, negatives=10,
                                  eval_every=0, tune_epochs=0, release_epochs=0, init=init,
                                  seed=0)
    model_config = hierarchy_model_config(latent_dim=4, levels=2, codebook_size=4,
                                          quantizer="hrq", curvature=1.0, commitment=0.25)
    result = fit_hierarchy(pairs, test, len(parents), model_config, config)
    return closure_ranking(result.model.embeddings, {"train": pairs[~test]}, pairs,
                           manifold=result.model.manifold)["train"]["map"]


def test_a_tree_start_learns_more_in_a_short_fit_than_a_random_one():
    tree, random = short_fit_map("tree"), short_fit_map("random")
    assert tree > random + 0.1, (tree, random)  # 0.76 against 0.62 when written


def test_a_bad_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of"):
        HierarchyTrainConfig(init="sala")
