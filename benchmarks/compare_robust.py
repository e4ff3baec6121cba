"""Robust-token training (issue 14) before and after: the earlier recipe ("before":
`--no-standardise --no-refit-deep-codes --no-balanced-kmeans`, and `--code-point hyperplane`
for hypervq) against the defaults ("after"),
the defaults with `--spread-weight 0.1` ("spread", trained quantizers), and the defaults with
one change of the recipe undone ("no-standardise", "no-refit", "no-balanced": which change
moved a score), for every quantizer and several seeds.

  catalogues  the synthetic suite of tests/catalogues.py (tight clusters, an 8 × 8 × 8
              hierarchy, tiny and huge norms, near-duplicates, few items for s^k), fitted in
              this process, with each --balances setting: per-level perplexity and collision
              rate
  sample      the sample glosses (MPNet, cached), fit defaults; collisions, disambiguation
              vocabulary, reconstruction cosine and `eval taxonomy` (rank correlation, NMI of
              the first token)
  movielens   MovieLens-100k titles/years/genres, fit defaults; collisions and `eval
              next-item` recall@10 / NDCG@10 (about 6 min per evaluation)

Prints markdown tables (mean ± std over the seeds). Fits and scores already in --workdir are
reused, so a run can be resumed or extended.

Usage: python benchmarks/compare_robust.py [--datasets catalogues,sample,movielens]
           [--quantizers hrq,rq,...] [--seeds 3] [--recipes before,after,spread]
           [--balances none,sinkhorn-last]
           [--workdir DIR] [--threads N]
"""

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _common import ROOT, hrqtok, mean_std

from hrqtok.quantize.registry import QUANTIZERS

SAMPLE = str(ROOT / "data" / "wordnet_glosses.jsonl")
# Each recipe's fit options by CLI name; the API name is the CLI name with "-" as "_", a
# "--no-" flag sets False. Options that do not apply to a quantizer are dropped for it.
RECIPES = {
    "before": ["--no-standardise", "--no-refit-deep-codes", "--no-balanced-kmeans",
               "--code-point", "hyperplane"],
    "after": [],
    "spread": ["--spread-weight", "0.1"],
    "no-standardise": ["--no-standardise"],
    "no-refit": ["--no-refit-deep-codes"],
    "no-balanced": ["--no-balanced-kmeans"],
}
# only the trained quantizers have a network (standardised input, spread term, refit codes)
TRAINED_ONLY = ("--no-standardise", "--no-refit-deep-codes", "--spread-weight")



def recipe_args(quantizer: str, recipe: str) -> list[str]:
    """The CLI options of one recipe that apply to this quantizer."""
    trained, args, pairs = QUANTIZERS[quantizer].trained, RECIPES[recipe], []
    i = 0
    while i < len(args):
        takes_value = not args[i].startswith("--no-")
        pairs.append(args[i:i + 1 + takes_value])
        i += 1 + takes_value
    kept = [p for p in pairs if (trained or p[0] not in TRAINED_ONLY)
            and (quantizer == "hypervq" or p[0] != "--code-point")]
    return [a for p in kept for a in p]


def recipe_options(quantizer: str, recipe: str) -> dict:
    """recipe_args as keyword arguments of hrqtok.Tokenizer.fit."""
    args, options = recipe_args(quantizer, recipe), {}
    for i, arg in enumerate(args):
        if arg.startswith("--no-"):
            options[arg[5:].replace("-", "_")] = False
        elif arg.startswith("--"):
            value = args[i + 1]
            options[arg[2:].replace("-", "_")] = (float(value) if value[0].isdigit()
                                                  else value)
    return options


CHOSEN = list(RECIPES)  # --recipes


def recipes(quantizer: str) -> list[str]:
    """The recipes asked for, less those that are the defaults again for this quantizer."""
    return [r for r in CHOSEN if r in ("after", "before") or recipe_args(quantizer, r)]



def catalogue_rows(quantizers: list[str], seeds: int, balances: list[str]) -> list[str]:
    import numpy as np

    import hrqtok
    from hrqtok.metrics.usage import collision_stats, level_usage
    from tests.catalogues import catalogues

    lines = ["| catalogue | quantizer | recipe | balance | perplexity per level | collisions | "
             "birthday bound |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for cat in catalogues():
        runs = [(q, b, r) for q, b in itertools.product(quantizers, balances) for r in recipes(q)]
        for quantizer, balance, recipe in runs:
            ppl, rates = [], []
            for seed in range(seeds):
                tok = hrqtok.Tokenizer.fit(cat.vectors, quantizer=quantizer, levels=cat.levels,
                                           codebook_size=cat.codebook_size, seed=seed,
                                           balance=balance, **recipe_options(quantizer, recipe))
                codes = tok.table.codes
                if cat.distinct is not None:
                    codes = codes[cat.distinct]
                ppl.append([level_usage(codes[:, i], cat.codebook_size)["perplexity"]
                            for i in range(cat.levels)])
                rates.append(collision_stats(codes)["collision_rate"])
            per_level = " / ".join(f"{v:.0f}" for v in np.mean(ppl, axis=0))
            lines.append(f"| {cat.name} | {quantizer} | {recipe} | {balance} | {per_level} | "
                         f"{mean_std([100 * r for r in rates], '.1f')} % | "
                         f"{100 * cat.birthday_rate:.1f} % |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def fitted(dataset: str, quantizer: str, recipe: str, seed: int, workdir: Path) -> Path:
    items = SAMPLE if dataset == "sample" else str(workdir / "ml-100k" / "items.jsonl")
    model = workdir / f"{dataset}-{quantizer}-{recipe}-{seed}"
    if not (model / "metrics.json").exists():
        hrqtok("fit", items, "--quantizer", quantizer, "--seed", str(seed), "--model", str(model),
               "--force", *recipe_args(quantizer, recipe))
    return model


def scores(dataset: str, model: Path, seed: int) -> dict:
    """The downstream scores of one fit, kept beside it (reused by later runs)."""
    saved = model.with_suffix(".scores.json")
    if not saved.exists():
        common = ["--tokens", str(model / "tokens.parquet"), "--runs", "1", "--seed", str(seed),
                  "--json"]
        if dataset == "sample":
            result = json.loads(hrqtok("eval", "taxonomy", "--items", SAMPLE, *common))
            found = result["results"]["model"]
            score = {"rank_correlation": found["rank_correlation"]["mean"],
                     "nmi_1": found["nmi_1"]["mean"]}
        else:
            result = json.loads(hrqtok("eval", "next-item", "--movielens-100k", *common))
            found = result["results"]["model"]
            score = {"recall@10": found["recall@10"]["mean"], "ndcg@10": found["ndcg@10"]["mean"]}
        saved.write_text(json.dumps(score))
    return json.loads(saved.read_text())


def dataset_rows(dataset: str, quantizers: list[str], seeds: int, workdir: Path) -> list[str]:
    keys = ("rank_correlation", "nmi_1") if dataset == "sample" else ("recall@10", "ndcg@10")
    lines = [f"| quantizer | recipe | perplexity per level | collisions | disambiguation | "
             f"cosine | {' | '.join(keys)} |", "| --- " * (6 + len(keys)) + "|"]
    for quantizer in quantizers:
        for recipe in recipes(quantizer):
            rows = []
            for seed in range(seeds):
                model = fitted(dataset, quantizer, recipe, seed, workdir)
                metrics = json.loads((model / "metrics.json").read_text())
                table = metrics["table"]
                rows.append({"perplexity": [lv["perplexity"] for lv in table["levels"]],
                             "collisions": 100 * table["collisions"]["collision_rate"],
                             "disambiguation": table["collisions"]["disambiguation_size"],
                             "cosine": metrics["vectors"]["reconstruction"]["cosine"],
                             **scores(dataset, model, seed)})
            per_level = " / ".join(f"{statistics.mean(r['perplexity'][i] for r in rows):.0f}"
                                   for i in range(len(rows[0]["perplexity"])))
            cells = [mean_std([r["collisions"] for r in rows], ".2f") + " %",
                     str(max(r["disambiguation"] for r in rows)),
                     mean_std([r["cosine"] for r in rows], ".4f"),
                     *(mean_std([r[k] for r in rows], ".3f") for k in keys)]
            lines.append(f"| {quantizer} | {recipe} | {per_level} | {' | '.join(cells)} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="catalogues,sample,movielens")
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipes", default="before,after,spread",
                        help=f"any of {', '.join(RECIPES)}")
    parser.add_argument("--balances", default="none,sinkhorn-last",
                        help="--balance settings the catalogues are fitted with")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process and of the hrqtok it starts")
    args = parser.parse_args()
    if args.threads:
        import os

        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    CHOSEN[:] = args.recipes.split(",")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-robust-"))
    workdir.mkdir(parents=True, exist_ok=True)
    quantizers = args.quantizers.split(",")
    for dataset in args.datasets.split(","):
        if dataset == "catalogues":
            lines = catalogue_rows(quantizers, args.seeds, args.balances.split(","))
        else:
            if dataset == "movielens" and not (workdir / "ml-100k" / "items.jsonl").exists():
                hrqtok("export", "movielens-100k", "--out", str(workdir / "ml-100k"))
            lines = dataset_rows(dataset, quantizers, args.seeds, workdir)
        print(f"\n**{dataset}** ({args.seeds} seeds; workdir {workdir})\n")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
