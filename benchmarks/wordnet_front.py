"""WordNet mode: the trade-off between the continuous embedding and its tokens (issue 15, part 1).

The (H)RQ term of the WordNet loss (`--quantize-weight` W) pulls every noun towards its codes:
a larger W gives tokens whose decoded points rank hypernyms better (quantized MAP, after codebook
tuning) and a continuous embedding that ranks them worse. This script fits the mammal subtree
(5-d, 3 x 32 codes by default) through the CLI for each W and seed and prints, per W, mean ± std
over the seeds of the closure-reconstruction MAP and Mean Rank of the continuous embedding and of
the decoded multitokens, on the train and the held-out pairs, with collisions and fit time.

Fits run `--jobs` at a time, each on its share of the cores (torch threads fighting over cores
make a fit many times slower); fit time is only comparable between runs with the same --jobs.

Usage: python benchmarks/wordnet_front.py [--weights 0.1,0.03,0.01,0] [--seeds 3]
           [--root mammal.n.01] [--latent-dim 5] [--codebook-size 32] [--jobs 2]
           [--workdir DIR] [-- extra fit options]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import hrqtok, mean_std, threads_env

COLUMNS = ("train MAP", "train MR", "quantized MAP", "quantized MR", "held-out MAP",
           "held-out quantized MAP", "collisions", "fit seconds")


def fit(model: Path, weight: float, seed: int, args: argparse.Namespace, env: dict) -> dict:
    """metrics.json of one fit (reused when the model directory already holds it)."""
    metrics = model / "metrics.json"
    if not metrics.exists():
        hrqtok("fit", "--wordnet", "--root", args.root, "--latent-dim", str(args.latent_dim),
               "--codebook-size", str(args.codebook_size), "--quantize-weight", str(weight),
               "--seed", str(seed), "--model", str(model), "--force", *args.extra, env=env)
    return json.loads(metrics.read_text())


def figures(metrics: dict) -> tuple[float, ...]:
    ranking = metrics["hierarchy"]["ranking"]
    continuous, quantized = ranking["continuous"], ranking["quantized"]
    return (continuous["train"]["map"], continuous["train"]["mean_rank"],
            quantized["train"]["map"], quantized["train"]["mean_rank"],
            continuous["test"]["map"], quantized["test"]["map"],
            100 * metrics["table"]["collisions"]["collision_rate"], metrics["fit"]["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="0.1,0.03,0.01,0")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--root", default="mammal.n.01")
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--codebook-size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="more `hrqtok fit` options, after --")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-front-"))
    env = threads_env(args.jobs)
    runs = [(w, s) for w in weights for s in range(args.seeds)]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(
            lambda run: figures(fit(workdir / f"w{run[0]}-seed{run[1]}", *run, args, env)),
            runs))
    print(f"{args.root}, {args.latent_dim}-d, 3 x {args.codebook_size} codes, "
          f"{args.seeds} seeds (mean ± std), {args.jobs} fits at a time; models in {workdir}\n")
    print("| W | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 1) + "|")
    for weight in weights:
        rows = [r for (w, _), r in zip(runs, results) if w == weight]
        cells = [mean_std([r[i] for r in rows], ".1f" if i >= 6 else ".3f" if i % 2 == 0 or i >= 4
                          else ".2f") for i in range(len(COLUMNS))]
        print(f"| {weight:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
