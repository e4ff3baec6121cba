"""Hypernym-generation evaluation: metric maths on hand-checked cases, the prefix trie and beam
search against brute force, and an end-to-end run on a synthetic hierarchy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hrqtok.config import Seq2SeqConfig
from hrqtok.evaluation.hypernyms import hypernym_recall, most_frequent, sample_rows
from hrqtok.evaluation.metrics import (
    clustered_standard_error,
    hit_positions,
    ndcg_at,
    recall_at,
)
from hrqtok.evaluation.seq2seq import Seq2Seq, beam_search
from hrqtok.evaluation.systems import random_multitokens, score_systems, summarise
from hrqtok.evaluation.vocabulary import BOS, PAD, SPECIAL, PrefixTrie, Vocabulary
from hrqtok.sources.hierarchy import Hierarchy
from tests.conftest import tree_parents

TINY = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, feedforward=64, dropout=0.0)


def test_hit_positions_recall_and_ndcg_by_hand():
    beams = np.array([[[1, 2], [3, 4], [5, 6]],
                      [[1, 1], [2, 2], [3, 3]],
                      [[7, 7], [8, 8], [9, 9]]])
    targets = np.array([[1, 2], [3, 3], [0, 0]])
    positions = hit_positions(beams, targets)
    assert positions.tolist() == [0, 2, -1]
    assert recall_at(positions, 1) == pytest.approx(1 / 3)
    assert recall_at(positions, 2) == pytest.approx(1 / 3)
    assert recall_at(positions, 3) == pytest.approx(2 / 3)
    # DCG: 1/log2(2) for position 0, 1/log2(4) = 0.5 for position 2
    assert ndcg_at(positions, 3) == pytest.approx((1 + 0.5) / 3)
    assert ndcg_at(positions, 2) == pytest.approx(1 / 3)


def test_vocabulary_gives_each_position_its_own_ids():
    tokens = np.array([[0, 3, 0], [2, 0, 1]])
    vocabulary = Vocabulary.for_tokens(tokens)
    assert vocabulary.sizes == [3, 4, 2] and len(vocabulary) == SPECIAL + 9
    ids = vocabulary.ids(tokens)
    assert ids.tolist() == [[2, 8, 9], [4, 5, 10]]
    assert np.array_equal(vocabulary.tokens(ids), tokens)


def test_prefix_trie_matches_brute_force():
    rng = np.random.default_rng(0)
    sequences = rng.integers(SPECIAL, 9, size=(40, 3))
    trie = PrefixTrie(sequences, 9)
    for t in range(3):
        prefixes = np.vstack([sequences[:, :t], rng.integers(SPECIAL, 9, size=(10, t))])
        mask = trie.allowed(torch.from_numpy(prefixes))
        for prefix, row in zip(prefixes, mask):
            expected = {s[t] for s in sequences if tuple(s[:t]) == tuple(prefix)}
            assert set(np.flatnonzero(row.numpy())) == expected


def _sequence_log_prob(model, source, sequence):
    with torch.no_grad():
        logits = model(source.unsqueeze(0), torch.as_tensor(sequence).unsqueeze(0))
        return logits.log_softmax(-1)[0, torch.arange(len(sequence)), torch.as_tensor(sequence)].sum().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_beam_search_with_a_wide_beam_ranks_every_valid_sequence_like_brute_force(seed):
    torch.manual_seed(seed)
    vocabulary = Vocabulary([3, 3, 2])
    valid = vocabulary.ids(np.array(list(itertools.product(range(3), range(3), range(2))))[::2])
    model = Seq2Seq(Seq2SeqConfig(**TINY), len(vocabulary), 3).eval()
    sources = vocabulary.ids(np.array([[0, 1, 0], [2, 2, 1]]))
    beams = beam_search(model, sources, PrefixTrie(valid, len(vocabulary)), width=len(valid) + 2)
    for source, generated in zip(sources, beams):
        scores = {tuple(s): _sequence_log_prob(model, torch.from_numpy(source), s) for s in valid}
        expected = sorted(scores, key=scores.get, reverse=True)
        assert [tuple(row) for row in generated[:len(valid)]] == expected
        assert (generated[len(valid):] == PAD).all()  # fewer valid sequences than beams


def test_random_baseline_has_the_model_shape():
    tokens = random_multitokens(500, [4, 4], seed=3)
    assert tokens.shape == (500, 3) and tokens[:, :2].max() < 4
    assert len({tuple(row) for row in tokens}) == 500  # disambiguated like a real table
    assert np.array_equal(tokens, random_multitokens(500, [4, 4], seed=3))


def test_clustered_standard_error():
    rng = np.random.default_rng(0)
    hits = (rng.random(200) < 0.3).astype(float)
    # one row per group: the usual standard error of a mean
    assert clustered_standard_error(hits, np.arange(200)) == pytest.approx(
        hits.std(ddof=1) / np.sqrt(200))
    # a group's rows are one observation: repeating every row within its group adds nothing
    assert clustered_standard_error(np.repeat(hits, 3), np.repeat(np.arange(200), 3)) == \
        pytest.approx(clustered_standard_error(hits, np.arange(200)))
    assert np.isnan(clustered_standard_error(hits, np.zeros(200)))
    assert np.isnan(clustered_standard_error(np.array([]), np.array([])))


def test_most_frequent_and_sample_rows():
    assert most_frequent(np.array([3, 1, 3, 2, 2, 5]), 2).tolist() == [2, 3]  # tie: smaller first
    assert most_frequent(np.array([4]), 3).tolist() == [4]
    rows = sample_rows(100, 10, np.random.default_rng(1))
    assert len(set(rows)) == 10 and (np.diff(rows) > 0).all() and rows.max() < 100
    assert rows.tolist() == sample_rows(100, 10, np.random.default_rng(1)).tolist()
    assert sample_rows(5, None, np.random.default_rng(1)).tolist() == [0, 1, 2, 3, 4]
    assert sample_rows(5, 9, np.random.default_rng(1)).tolist() == [0, 1, 2, 3, 4]


def test_hypernym_recall_samples_pairs_and_reports_rare_and_frequent():
    parents = tree_parents(branching=4, depth=3)
    n = len(parents)
    hierarchy = Hierarchy.from_parents(names=[f"n{i}" for i in range(n)], parents=parents,
                                       glosses=[""] * n, lexnames=[""] * n)
    pairs = hierarchy.pairs
    test = np.random.default_rng(0).random(len(pairs)) < 0.3
    config = Seq2SeqConfig(**TINY, epochs=1, batch_size=32, beam=5, seed=3)
    tokens = random_multitokens(n, [5, 5, 5], 0)
    full = hypernym_recall(tokens, pairs, test, config)
    assert full["train_pairs"] == (~test).sum() and full["test_pairs"] == test.sum()
    # the reference, counted independently: the 5 hypernyms most often in the train pairs
    counts: dict[int, int] = {}
    for hypernym in pairs[~test, 1]:
        counts[hypernym] = counts.get(hypernym, 0) + 1
    top = sorted(counts, key=lambda h: (-counts[h], h))[:5]
    in_top = np.isin(pairs[test, 1], top)
    assert full["frequent_reference@5"] == pytest.approx(in_top.mean())
    assert full["rare_test_pairs"] == (~in_top).sum() > 0
    assert 0 <= full["rare_recall@5"] <= 1 and full["recall@5_se"] > 0
    sampled = hypernym_recall(tokens, pairs, test, config, train_pairs=40, test_pairs=25)
    assert sampled["train_pairs"] == 40 and sampled["test_pairs"] == 25
    assert sampled == {**hypernym_recall(tokens, pairs, test, config, train_pairs=40,
                                         test_pairs=25),
                       "train_seconds": sampled["train_seconds"], "seconds": sampled["seconds"]}


def test_hypernym_recall_learns_tree_tokens_better_than_random():
    parents = tree_parents(branching=4, depth=3)  # 85 nodes, 228 closure pairs
    n = len(parents)
    hierarchy = Hierarchy.from_parents(names=[f"n{i}" for i in range(n)], parents=parents,
                                       glosses=[""] * n, lexnames=[""] * n)
    # each node's path from the root as codes (0 = no branch): perfectly hierarchical tokens
    path = np.zeros((len(parents), 3), dtype=np.int64)
    for node in range(1, len(parents)):
        parent = parents[node][0]
        depth = int(hierarchy.depths[node])
        path[node] = path[parent]
        path[node, depth - 1] = node % 4 + 1
    tokens = np.column_stack([path, np.zeros(len(path), np.int64)])
    test = np.random.default_rng(0).random(len(hierarchy.pairs)) < 0.2
    config = Seq2SeqConfig(**TINY, epochs=40, batch_size=32, learning_rate=3e-3, beam=5)
    ours = hypernym_recall(tokens, hierarchy.pairs, test, config)
    chance = hypernym_recall(random_multitokens(len(path), [5, 5, 5], 0), hierarchy.pairs, test, config)
    assert ours["test_pairs"] == test.sum() and ours["hyponyms"] <= ours["test_pairs"]
    # (measured: 1.0 against 0.60; random tokens still let the model name frequent ancestors)
    assert ours["recall@5"] >= chance["recall@5"] + 0.25
    assert ours["recall@1"] <= ours["recall@5"]


def test_summarise_means_and_sample_std():
    summary = summarise([{"recall@10": 0.5}, {"recall@10": 0.7}])
    assert summary["runs"] == 2 and summary["recall@10"]["mean"] == pytest.approx(0.6)
    assert summary["recall@10"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summary["recall@10"]["values"] == [0.5, 0.7]  # in seed order, for paired differences
    assert BOS != PAD


def test_score_systems_passes_the_tokens_or_fresh_random_ones_per_seed():
    tokens = np.zeros((50, 3), dtype=np.int64)
    seen = []

    def evaluate(t, seed):
        seen.append((t is tokens, seed, t[:, :2].sum()))
        return {"score": float(seed)}

    results = score_systems(tokens, [4, 4], evaluate, systems=("model", "random"), seed=7, runs=2)
    assert [s[:2] for s in seen] == [(True, 7), (True, 8), (False, 7), (False, 8)]
    assert seen[2][2] != seen[3][2]  # a new draw for each seed
    assert results["model"]["score"]["mean"] == pytest.approx(7.5) and results["random"]["runs"] == 2
    assert results["model"]["score"]["values"] == [7.0, 8.0]
    with pytest.raises(ValueError, match="unknown systems"):
        score_systems(tokens, [4, 4], evaluate, systems=("other",), seed=0, runs=1)
