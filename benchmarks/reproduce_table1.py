"""The HRQ paper's Table 1 (hypernym generation, §4.1) on this machine: HRQ against RQ multitokens
and the random baseline, k = 3, s = 64, for each latent dimension h (the paper's gap is largest at
h = 32), next to the paper's figures.

For each h, HRQ (`--geometry hyperbolic`) and RQ (`--geometry euclidean`) are fitted through the
CLI with equal settings and the same seed, so they share the held-out split. Then `hrqtok eval
hypernyms` scores each model's tokens over --runs seeds of the transformer, and random
multitokens of the same shape (`--baseline random`). At each seed every system trains and is scored on
the same sample of pairs (--train-pairs / --test-pairs; the whole split when not given).

The table gives recall@10 (mean ± std over runs) with the mean clustered standard error of one
run, recall@10 on the pairs whose hypernym is not among the 10 most frequent train hypernyms
("rare"), recall@1, the reference of always answering those 10, and, as evidence of the tokens'
structure, the collisions and distinct multitokens, how often a noun shares its first 1 / 2
tokens with its direct hypernym, with any closure hypernym and with a random noun, the closure
MAP of the embedding and of the decoded multitokens over the train pairs (all from
`metrics.json` of the fit), and the wall times.

Fits run --fit-jobs at a time (default one, on all the cores: a full-length all-noun fit takes
12–27 min on 2 cores and well over an hour on one), then evaluations --jobs at a time, each
on its share of the cores. Everything is kept in --workdir and reused by a later run with the
same directory.

Usage: python benchmarks/reproduce_table1.py [--latent-dims 8,32] [--root SYNSET] [--runs 3]
           [--train-pairs N] [--test-pairs M] [--fit-args "--epochs 60"] [--eval-args "..."]
           [--fit-seed 0] [--fit-jobs 1] [--jobs 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import hrqtok, threads_env

GEOMETRIES = {"HRQ": "hyperbolic", "RQ": "euclidean"}
SYSTEMS = ("HRQ", "RQ", "random")
# Table 1 of the HRQ paper, s = 64, k = 3: recall@10 in % by hidden dimension
PAPER = {"RQ": {4: 71.2, 8: 73.7, 16: 69.8, 32: 67.1}, "HRQ": {4: 79.0, 8: 79.6, 16: 79.1, 32: 78.3}}
CODEBOOK_SIZE, LEVELS = 64, 3


def timed(path: Path, run) -> float:
    """Run ``run()`` unless ``path`` exists; its wall seconds (kept beside it for reuse)."""
    seconds = path.with_suffix(".seconds")
    if not path.exists():
        start = time.perf_counter()
        run()
        seconds.write_text(str(time.perf_counter() - start))
    return float(seconds.read_text())


def fit(workdir: Path, name: str, h: int, args: argparse.Namespace, env: dict) -> float:
    model = workdir / f"{name}-h{h}"
    root = ["--root", args.root] if args.root else []
    return timed(model / "metrics.json", lambda: hrqtok(
        "fit", "--wordnet", *root, "--geometry", GEOMETRIES[name], "--latent-dim", str(h),
        "--codebook-size", str(CODEBOOK_SIZE), "--levels", str(LEVELS),
        "--seed", str(args.fit_seed),
        "--model", str(model), "--force", *shlex.split(args.fit_args), env=env))


def evaluate(workdir: Path, system: str, h: int, args: argparse.Namespace, env: dict) -> float:
    """One system's runs: HRQ's or RQ's tokens, or random ones of the same shape (scored on
    HRQ's model directory, whose split RQ's equals: same seed)."""
    model = workdir / f"{'HRQ' if system == 'random' else system}-h{h}"
    out = workdir / f"eval-{system}-h{h}.json"
    samples = [f"--{side}-pairs={n}" for side, n in (("train", args.train_pairs),
                                                     ("test", args.test_pairs)) if n]
    baseline = ["--baseline", "random"] if system == "random" else []

    shared = workdir / f"eval-HRQ-h{h}.json"  # an HRQ evaluation run with --compare
    if system == "random" and shared.exists() and "random" in json.loads(shared.read_text())[
            "results"]:
        return float(shared.with_suffix(".seconds").read_text())

    def run() -> None:
        out.write_text(hrqtok("eval", "hypernyms", "--model", str(model), *baseline, "--runs",
                              str(args.runs), *samples, "--json", *shlex.split(args.eval_args),
                              env=env))
    return timed(out, run)


def result_of(workdir: Path, system: str, h: int) -> dict:
    path = workdir / f"eval-{system}-h{h}.json"
    if not path.exists():  # random multitokens scored by an HRQ evaluation with --compare
        path = workdir / f"eval-HRQ-h{h}.json"
    results = json.loads(path.read_text())["results"]
    return results["random" if system == "random" else "model"]


def cells(result: dict) -> list[str]:
    def pct(key: str) -> str:
        return f"{100 * result[key]['mean']:.1f} ± {100 * result[key]['std']:.1f}"
    return [pct("recall@10"), f"{100 * result['recall@10_se']['mean']:.1f}", pct("rare_recall@10"),
            pct("recall@1"), f"{100 * result['frequent_reference@10']['mean']:.1f}"]


def prefix_shares(metrics: dict) -> list[str]:
    shares = metrics["hierarchy"]["prefix_agreement"]
    return [" / ".join(f"{100 * v:.1f}" for v in shares[key][:2])
            for key in ("parent_pairs", "closure_pairs", "random_pairs")]


def distinct_multitokens(metrics: dict) -> str:
    """How many of the s^k code paths the nouns use (before the disambiguation token)."""
    return f"{metrics['table']['prefixes'][-1]['prefixes']:,}"


def train_maps(metrics: dict) -> str:
    """Closure MAP over the train pairs of the embedding and of the decoded multitokens."""
    ranking = metrics["hierarchy"]["ranking"]
    return " / ".join(f"{ranking[kind]['train']['map']:.3f}" for kind in ("continuous", "quantized"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latent-dims", default="8,32")
    parser.add_argument("--root", default=None, help="a subtree (default: all nouns)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-pairs", type=int, default=None)
    parser.add_argument("--test-pairs", type=int, default=None)
    parser.add_argument("--fit-args", default="", help="more `hrqtok fit` options, for both")
    parser.add_argument("--eval-args", default="", help="more `eval hypernyms` options")
    parser.add_argument("--fit-seed", type=int, default=0,
                        help="both fits' seed (it also draws the held-out split)")
    parser.add_argument("--fit-jobs", type=int, default=1, help="fits at a time")
    parser.add_argument("--jobs", type=int, default=2, help="evaluations at a time")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    dims = [int(h) for h in args.latent_dims.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-table1-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fits = [(name, h) for h in dims for name in GEOMETRIES]
    evaluations = [(system, h) for h in dims for system in SYSTEMS]
    with ThreadPoolExecutor(args.fit_jobs) as pool:
        env = threads_env(args.fit_jobs)
        fit_seconds = dict(zip(fits, pool.map(lambda r: fit(workdir, *r, args, env), fits)))
    with ThreadPoolExecutor(args.jobs) as pool:
        env = threads_env(args.jobs)
        eval_seconds = dict(zip(evaluations, pool.map(lambda r: evaluate(workdir, *r, args, env),
                                                      evaluations)))

    print(f"{args.root or 'all nouns'}, k = {LEVELS}, s = {CODEBOOK_SIZE}, {args.runs} transformer "
          f"seeds (mean ± std; s.e.: the mean clustered standard error of one run); "
          f"train pairs {args.train_pairs or 'all'}, test pairs {args.test_pairs or 'all'}; "
          f"fit seed {args.fit_seed}, options {args.fit_args or 'defaults'}; "
          f"{args.fit_jobs} fit(s) and {args.jobs} "
          f"evaluation(s) at a time; in {workdir}\n")
    print("| h | tokens | recall@10 % | s.e. | rare@10 % | recall@1 % | top-10 ref. % | paper "
          "recall@10 % | collisions % | distinct multitokens | shares 1 / 2 tokens with: parent "
          "| closure hypernym | random noun | train MAP: continuous / tokens | fit min | eval min |")
    print("| --- " * 17 + "|")
    for h in dims:
        for system in SYSTEMS:
            fitted = system != "random"
            metrics = json.loads((workdir / f"{system}-h{h}" / "metrics.json").read_text()
                                 ) if fitted else {}
            result = result_of(workdir, system, h)
            print(" | ".join([
                f"| {h}", system, *cells(result),
                f"{PAPER[system].get(h, '')}" if fitted else "",
                f"{100 * metrics['table']['collisions']['collision_rate']:.1f}" if fitted else "",
                distinct_multitokens(metrics) if fitted else "",
                *(prefix_shares(metrics) if fitted else ["", "", ""]),
                train_maps(metrics) if fitted else "",
                f"{fit_seconds[(system, h)] / 60:.1f}" if fitted else "",
                f"{eval_seconds[(system, h)] / 60:.1f}"]) + " |")
    print("\nrecall@10 of HRQ minus RQ, per h (points; the s.e. of a difference of two "
          "independent runs is about √2 × s.e.). At one seed both systems train and are scored "
          "on the same pairs, so the differences seed by seed follow, with their mean ± its "
          "standard error over the seeds:")
    for h in dims:
        recall = {n: result_of(workdir, n, h)["recall@10"] for n in GEOMETRIES}
        paper = (f" (paper {PAPER['HRQ'][h] - PAPER['RQ'][h]:+.1f})" if h in PAPER["HRQ"]
                 else "")
        print(f"  h = {h}: {100 * (recall['HRQ']['mean'] - recall['RQ']['mean']):+.1f}{paper}"
              + paired(recall["HRQ"], recall["RQ"]))


def paired(ours: dict, theirs: dict) -> str:
    """Seed-by-seed differences in points (evaluations that kept their runs' values)."""
    if "values" not in ours or "values" not in theirs:
        return ""
    differences = 100 * (np.array(ours["values"]) - np.array(theirs["values"]))
    spread = (f" ± {differences.std(ddof=1) / np.sqrt(len(differences)):.1f}"
              if len(differences) > 1 else "")
    return (f"; by seed {', '.join(f'{d:+.1f}' for d in differences)}: "
            f"{differences.mean():+.1f}{spread}")


if __name__ == "__main__":
    main()
