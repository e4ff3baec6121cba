"""The hypernym task's transformer (`eval hypernyms` defaults: d 128, 2 + 2 layers, batch 256)
on all-noun data: real WordNet closure pairs, random 3 × 64 multitokens plus a disambiguation
token (sequences of 4 ids, so little matrix work per step).

Training pairs/s, in one run on the same batches, of four steps:
  torch        nn.Dropout and torch's per-tensor Adam loop (the previous step),
  +lanes       the dropout masks cut from 16-bit lanes of random words (evaluation.dropout),
  +fused       torch's fused Adam only,
  ours         both (what `train_seq2seq` runs),
each timed twice in alternating order (best kept), with the mean training loss of its epoch
(the same batches: the changes must not change what is learnt). Then `train_seq2seq` itself
and beam search over sampled held-out nouns.

Usage: python benchmarks/bench_seq2seq.py [--pairs 20000]
"""

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from _common import ROOT  # noqa: F401  (puts the repository on sys.path)
from torch import nn

from hrqtok.config import Seq2SeqConfig
from hrqtok.evaluation.dropout import LaneDropout
from hrqtok.evaluation.seq2seq import Seq2Seq, beam_search, train_seq2seq
from hrqtok.evaluation.systems import random_multitokens
from hrqtok.evaluation.vocabulary import PrefixTrie, Vocabulary
from hrqtok.sources.wordnet import load_nouns

CONFIG = Seq2SeqConfig(device="cpu")
VARIANTS = {"torch": (False, False), "+lanes": (True, False), "+fused": (False, True),
            "ours": (True, True)}


def torch_dropout(model: Seq2Seq) -> None:
    """Put nn.Dropout back where the model has LaneDropout."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, LaneDropout):
                setattr(module, name, nn.Dropout(child.p))


def epoch(lanes: bool, fused: bool, source: torch.Tensor, target: torch.Tensor,
          vocabulary_size: int, batches: list[torch.Tensor]) -> tuple[float, float]:
    """Seconds and mean loss of one epoch over ``batches`` (train_seq2seq's step)."""
    torch.manual_seed(0)
    model = Seq2Seq(CONFIG, vocabulary_size, source.shape[1])
    if not lanes:
        torch_dropout(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG.learning_rate, fused=fused)
    model.train()
    total = 0.0
    start = time.perf_counter()
    for batch in batches:
        logits = model(source[batch], target[batch])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), target[batch].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    return time.perf_counter() - start, total / sum(len(b) for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20_000)
    args = parser.parse_args()
    nouns = load_nouns()
    tokens = random_multitokens(len(nouns.names), [64] * 3, seed=0)
    vocabulary = Vocabulary.for_tokens(tokens)
    ids = vocabulary.ids(tokens)
    rng = np.random.default_rng(0)
    pairs = nouns.pairs[rng.choice(len(nouns.pairs), args.pairs, replace=False)]
    source, target = torch.from_numpy(ids[pairs[:, 0]]), torch.from_numpy(ids[pairs[:, 1]])
    batches = list(torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0))
                   .split(CONFIG.batch_size))
    print(f"{len(nouns.names):,} nouns, {args.pairs:,} closure pairs, {len(batches)} batches of "
          f"{CONFIG.batch_size}, {torch.get_num_threads()} threads")

    best = {name: float("inf") for name in VARIANTS}
    losses = {}
    for order in (list(VARIANTS), list(VARIANTS)[::-1]):
        for name in order:
            seconds, losses[name] = epoch(*VARIANTS[name], source, target, len(vocabulary),
                                          batches)
            best[name] = min(best[name], seconds)
    for name in VARIANTS:
        print(f"  {name:7s} {best[name]:6.2f} s/epoch  {args.pairs / best[name]:7,.0f} pairs/s  "
              f"{best['torch'] / best[name]:.2f}x torch  mean loss {losses[name]:.4f}")

    start = time.perf_counter()
    model = train_seq2seq(ids[pairs[:, 0]], ids[pairs[:, 1]], len(vocabulary),
                          replace(CONFIG, epochs=1)).model
    seconds = time.perf_counter() - start
    print(f"train_seq2seq, 1 epoch: {seconds:.2f} s ({args.pairs / seconds:,.0f} pairs/s)")

    queries = ids[rng.choice(len(ids), 4_000, replace=False)]
    trie = PrefixTrie(ids, len(vocabulary))
    start = time.perf_counter()
    beam_search(model, queries, trie, width=CONFIG.beam)
    seconds = time.perf_counter() - start
    print(f"beam search, {len(queries):,} nouns, width {CONFIG.beam}: {seconds:.2f} s "
          f"({len(queries) / seconds:,.0f} nouns/s)")


if __name__ == "__main__":
    main()
