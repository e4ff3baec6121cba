"""WordNet mode: how fast an embedding recipe climbs on all nouns (issue 15, part 1).

Fits the whole noun closure (or --root's subtree) through the CLI once per recipe, one after
another and each alone on the machine, and prints the closure MAP / Mean Rank that the training
log records every --eval-every epochs (on its sample of 2,000 hyponyms: train and held-out
pairs), with the seconds of stepping so far (without those checks), then the final report's
figures over all pairs (continuous and quantized) and the fit's wall time.

A recipe is a name and the `hrqtok fit` options that make it; the shared ones (--shared) come
first. The defaults compare the node optimizers on the embedding alone (no (H)RQ term, no
tuning), 10 + 30 epochs at batch 1024.

Usage: python benchmarks/wordnet_recipes.py [--recipe NAME="OPTIONS" ...] [--shared "..."]
           [--root SYNSET] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path

from _common import hrqtok

RECIPES = {"rsgd": "--node-optimizer rsgd", "rmsprop": "--node-optimizer rmsprop"}
SHARED = ("--latent-dim 10 --quantize-weight 0 --tune-epochs 0 --release-epochs 0 "
          "--batch-size 1024 --burn-in-epochs 10 --epochs 30 --eval-every 10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", default=None,
                        help='NAME="fit options" (repeat); default: rsgd and rmsprop')
    parser.add_argument("--shared", default=SHARED, help="fit options every recipe gets first")
    parser.add_argument("--root", default=None, help="a subtree (default: all nouns)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    recipes = dict(r.split("=", 1) for r in args.recipe) if args.recipe else RECIPES
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-recipes-"))
    root = ["--root", args.root] if args.root else []
    print(f"{args.root or 'all nouns'}; shared options: {args.shared}; models in {workdir}\n")
    print("| recipe | epoch | step s | train MAP | train MR | held-out MAP | held-out MR |")
    print("| --- " * 7 + "|")
    finals = []
    for name, options in recipes.items():
        model = workdir / name
        if not (model / "metrics.json").exists():
            start = time.perf_counter()
            hrqtok("fit", "--wordnet", *root, *shlex.split(args.shared), *shlex.split(options),
                   "--model", str(model), "--force", "--quiet")
            (model / "wall_seconds").write_text(str(time.perf_counter() - start))
        stepped = 0.0
        for line in (model / "train_log.jsonl").read_text().splitlines():
            row = json.loads(line)
            stepped += row.get("seconds", 0.0)
            if "train_map" in row:
                print(f"| {name} | {row['epoch']} | {stepped:.0f} | {row['train_map']:.3f} | "
                      f"{row['train_mean_rank']:.1f} | {row['test_map']:.3f} | "
                      f"{row['test_mean_rank']:.1f} |")
        ranking = json.loads((model / "metrics.json").read_text())["hierarchy"]["ranking"]
        finals.append((name, ranking, float((model / "wall_seconds").read_text())))
    print("\nFinal report, all pairs:\n")
    print("| recipe | train MAP | train MR | held-out MAP | quantized train MAP | "
          "quantized held-out MAP | fit wall s |")
    print("| --- " * 7 + "|")
    for name, ranking, wall in finals:
        c, q = ranking["continuous"], ranking["quantized"]
        print(f"| {name} | {c['train']['map']:.3f} | {c['train']['mean_rank']:.1f} | "
              f"{c['test']['map']:.3f} | {q['train']['map']:.3f} | {q['test']['map']:.3f} | "
              f"{wall:.0f} |")


if __name__ == "__main__":
    main()
