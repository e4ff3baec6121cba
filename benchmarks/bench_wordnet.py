"""WordNet mode: training throughput on the full noun closure (pairs/s, 50 negatives each), and
time-to-quality on the mammal subtree (5-d, both geometries).

Throughput compares, in one run on the same batches of train pairs, at batch 512 and 2048:
  baseline        autograd through the Poincaré distance, 50 independent negatives per pair,
                  one gradient row per occurrence (a straightforward PyTorch port of Nickel &
                  Kiela),
  ours            the hand-written gradient with negatives shared by groups of 32 pairs,
  ours+HRQ        the same plus the HRQ loss of both ends and the codebook step, its gradients
                  in closed form (what `fit` runs),
  ours+HRQ/autograd  the same step with the HRQ loss through autograd (the previous version).

Usage: python benchmarks/bench_wordnet.py [--skip-mammals] [--skip-throughput]
"""

import sys
import time

import torch
from _common import ROOT  # noqa: F401  (puts the repository on sys.path)

from hrqtok import geometry
from hrqtok.config import HierarchyTrainConfig
from hrqtok.fit.hierarchy import HierarchyTraining, NegativeSampler, fit_hierarchy
from hrqtok.metrics.hierarchy import hierarchy_report
from hrqtok.models.hierarchy import HierarchyModel, hierarchy_model_config
from hrqtok.sources.hierarchy import split_pairs
from hrqtok.sources.wordnet import load_nouns

BATCHES, STEPS, NEGATIVES = (512, 2048), 300, 50  # 300 steps: shorter runs varied by 15 %
WARM_UP = 5  # steps before each timing


def _model_config(geometry_name, dim):
    return hierarchy_model_config(latent_dim=dim, levels=3, codebook_size=256,
                                  quantizer={"hyperbolic": "hrq", "euclidean": "rq"}[geometry_name],
                                  curvature=1.0, commitment=0.25)


def baseline_step(table, batch, sampler, lr, c):
    u, v = batch[:, 0], batch[:, 1]
    negatives, masked = sampler.sample(u.view(-1, 1))  # a group of one: independent negatives
    masked = masked.squeeze(1)
    index = torch.cat([u, v, negatives.reshape(-1)])
    rows = table[index].requires_grad_()
    eu, ev, en = rows[:len(u)], rows[len(u):2 * len(u)], rows[2 * len(u):].view(len(u), -1, table.shape[1])
    d = geometry.dist_arcosh(eu.unsqueeze(1), torch.cat([ev.unsqueeze(1), en], 1), c=c)
    logits = (-d).masked_fill(torch.nn.functional.pad(masked, (1, 0)), float("-inf"))
    torch.nn.functional.cross_entropy(logits, torch.zeros(len(u), dtype=torch.long),
                                      reduction="sum").backward()
    with torch.no_grad():
        scale = (1 - c * rows.pow(2).sum(-1, keepdim=True)).pow(2) / 4
        table.index_add_(0, index, rows.grad * scale, alpha=-lr)
        table[index] = geometry.project(table[index], c=c)


class _AutogradQuantizerLoop(HierarchyTraining):
    """fit's step with the (H)RQ loss differentiated by autograd through forward()."""

    def quantizer_step(self, ends, index, grads):
        with torch.inference_mode(False), torch.enable_grad():  # step() runs in inference mode
            nodes, counts = torch.unique(ends.clone(), return_counts=True)
            points = self.model.embeddings.detach().index_select(0, nodes).requires_grad_()
            loss = self.model.quantizer(points, counts.to(points.dtype)).loss * len(ends)
            self.codebook_optimizer.zero_grad(set_to_none=True)
            (self.config.quantize_weight * loss).backward()
        self.codebook_optimizer.step()
        index.append(nodes)
        grads.append(points.grad)
        return loss.item()


def throughput():
    nouns = load_nouns()
    test = split_pairs(len(nouns.pairs), 0.15, seed=0)
    train = torch.from_numpy(nouns.pairs[~test])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    n = len(nouns)
    print(f"full noun closure: {n:,} nouns, {len(train):,} train pairs; {NEGATIVES} negatives "
          f"per pair, 10-d Poincaré ball, 3 x 256 codes, {STEPS} steps each")
    model = HierarchyModel(_model_config("hyperbolic", 10), n)
    for size in BATCHES:
        batches = [train[order[i * size:(i + 1) * size]] for i in range(STEPS)]
        model.reset(torch.Generator().manual_seed(0))
        sampler = NegativeSampler(n, nouns.pairs[~test], NEGATIVES, torch.Generator().manual_seed(0))
        table = model.embeddings.detach()
        start = time.perf_counter()
        for b in batches:
            baseline_step(table, b, sampler, 0.001, 1.0)
        base = STEPS * size / (time.perf_counter() - start)
        print(f"  batch {size}: baseline (autograd, independent negatives) {base:10,.0f} pairs/s")
        results = {}
        for label, loop_class, quantize in (("ours", HierarchyTraining, False), ("ours+HRQ", HierarchyTraining, True),
                                            ("ours+HRQ/autograd", _AutogradQuantizerLoop, True)):
            model.reset(torch.Generator().manual_seed(0))
            loop = loop_class(model, nouns.pairs, test, HierarchyTrainConfig(batch_size=size),
                              torch.Generator().manual_seed(0), None)
            if quantize:
                loop.initialise_codebooks()
            for b in batches[:WARM_UP]:  # compiles the numba loops (on a first run) untimed
                loop.step(b, 0.001, quantize=quantize)
            start = time.perf_counter()
            for b in batches:
                loop.step(b, 0.001, quantize=quantize)
            results[label] = STEPS * size / (time.perf_counter() - start)
            print(f"  batch {size}: {label:17s} {results[label]:10,.0f} pairs/s "
                  f"({results[label] / base:.1f}x baseline)")
        print(f"  batch {size}: closed-form HRQ gradients vs autograd: "
              f"{results['ours+HRQ'] / results['ours+HRQ/autograd']:.2f}x")


def mammals():
    nouns = load_nouns("mammal.n.01")
    test = split_pairs(len(nouns.pairs), 0.15, seed=0)
    print(f"mammal subtree: {len(nouns)} nouns, {len(nouns.pairs)} pairs "
          f"({int((~test).sum())} train); 5-d, 3 x 256 codes, `fit --wordnet` defaults")
    for geometry_name in ("hyperbolic", "euclidean"):
        config = HierarchyTrainConfig(eval_every=10, eval_sample=len(nouns))
        start = time.perf_counter()
        reached = []

        def progress(phase, epoch, total, row):
            if "train_map" in row and row["train_mean_rank"] <= 1.3 and row["train_map"] >= 0.92:
                reached.append((epoch, time.perf_counter() - start))

        result = fit_hierarchy(nouns.pairs, test, len(nouns), _model_config(geometry_name, 5),
                               config, progress=progress)
        ranking = hierarchy_report(result.model, nouns, test,
                                   result.codes.numpy())["ranking"]
        target = (f"MR <= 1.3 and MAP >= 0.92 first at epoch {reached[0][0]} ({reached[0][1]:.0f} s)"
                  if reached else "MR <= 1.3 and MAP >= 0.92 not reached")
        print(f"  {geometry_name}: {result.seconds:5.1f} s, {len(result.log)} epochs, "
              f"{result.pairs_per_second:,.0f} pairs/s; {target}")
        for kind in ("continuous", "quantized"):
            scores = ranking[kind]
            print(f"    {kind:10s}: train MR {scores['train']['mean_rank']:6.2f} "
                  f"MAP {scores['train']['map']:.3f}; held-out MR {scores['test']['mean_rank']:6.2f} "
                  f"MAP {scores['test']['map']:.3f}")


if __name__ == "__main__":
    if "--skip-throughput" not in sys.argv:
        throughput()
    if "--skip-mammals" not in sys.argv:
        mammals()
