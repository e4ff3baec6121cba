"""Reproduction of the HRQ paper's downstream comparison (§4, Tables 1–2) on what this machine
has: for each task it fits an HRQ and an RQ tokenizer with equal settings through the CLI, then
evaluates both and the random baseline over 3 seeds with `hrqtok eval`, and prints a markdown
table of means ± std (the README shows them) with the wall time.

  taxonomy   the sample catalogue (data/wordnet_glosses.jsonl, its `path` field), fit defaults
  hypernyms  the WordNet mammal subtree, k=3, s=32, latent 5; `eval hypernyms` defaults
  next-item  MovieLens-100k from the recbole package, fit defaults on title/year/genre texts;
             `eval next-item` defaults

Usage: python benchmarks/reproduce_eval.py [--tasks taxonomy,hypernyms,next-item] [--runs N]
                                           [--workdir DIR] [--out FILE]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import ROOT, hrqtok

SAMPLE = str(ROOT / "data" / "wordnet_glosses.jsonl")
MAMMALS = ["--wordnet", "--root", "mammal.n.01", "--latent-dim", "5", "--levels", "3",
           "--codebook-size", "32"]
NAMES = {"hyperbolic": "HRQ", "euclidean": "RQ"}



def fitted(workdir: Path, name: str, geometry: str, fit_args: list[str], items: str | None) -> dict:
    """Fit (once per workdir) and, for item models, encode; the model's metrics and token table."""
    model = workdir / f"{name}-{geometry}"
    tokens = workdir / f"{name}-{geometry}.parquet"
    if not (model / "metrics.json").exists():
        hrqtok("fit", *([items] if items else []), *fit_args, "--geometry", geometry, "--seed", "0",
               "--model", str(model), "--force")
    if not tokens.exists():
        hrqtok("encode", *([items] if items else []), "--model", str(model), "--out", str(tokens))
    metrics = json.loads((model / "metrics.json").read_text())
    return {"model": str(model), "tokens": str(tokens),
            "collisions": metrics["table"]["collisions"]["collision_rate"]}


def systems(workdir: Path, name: str, fit_args: list[str], items: str | None, evaluate) -> list:
    """(tokens name, results, collision rate) for HRQ, RQ and random (run with HRQ's eval)."""
    rows = []
    for geometry in ("hyperbolic", "euclidean"):
        fit = fitted(workdir, name, geometry, fit_args, items)
        report = evaluate(fit, compare=geometry == "hyperbolic")
        for system, result in report["results"].items():
            rows.append((NAMES[geometry] if system == "model" else "random", result,
                         fit["collisions"] if system == "model" else None))
    return rows


def cell(result: dict, key: str) -> str:
    return f"{result[key]['mean']:.3f} ± {result[key]['std']:.3f}"


def table(rows: list, columns: list[tuple[str, str]]) -> str:
    lines = ["| tokens | " + " | ".join(title for title, _ in columns) + " | collisions |",
             "| --- " * (len(columns) + 2) + "|"]
    for name, result, collisions in rows:
        lines.append(f"| {name} | " + " | ".join(cell(result, key) for _, key in columns) +
                     f" | {'' if collisions is None else f'{collisions:.1%}'} |")
    return "\n".join(lines)


def taxonomy(workdir: Path, runs: int) -> str:
    def evaluate(fit, compare):
        return json.loads(hrqtok("eval", "taxonomy", "--tokens", fit["tokens"], "--items", SAMPLE,
                                 "--runs", str(runs), "--json", *(["--compare"] if compare else [])))
    rows = systems(workdir, "sample", [], SAMPLE, evaluate)
    return ("Taxonomy agreement on the sample catalogue (2,439 WordNet glosses, `path` field; fit "
            "defaults: 3 × 256, latent 32)\n\n" +
            table(rows, [("rank correlation", "rank_correlation"), ("NMI, 1 token", "nmi_1"),
                         ("purity, 1 token", "purity_1"), ("NMI, 2 tokens", "nmi_2")]))


def hypernyms(workdir: Path, runs: int) -> str:
    def evaluate(fit, compare):
        return json.loads(hrqtok("eval", "hypernyms", "--model", fit["model"], "--runs", str(runs),
                                 "--json", *(["--compare"] if compare else [])))
    rows = systems(workdir, "mammals", MAMMALS, None, evaluate)
    return ("Hypernym generation on the mammal subtree (k=3, s=32, latent 5; `eval hypernyms` "
            "defaults)\n\n" + table(rows, [("recall@10", "recall@10"), ("recall@1", "recall@1")]))


def next_item(workdir: Path, runs: int) -> str:
    movielens = workdir / "ml-100k"
    if not (movielens / "items.jsonl").exists():
        hrqtok("export", "movielens-100k", "--out", str(movielens))

    def evaluate(fit, compare):
        return json.loads(hrqtok("eval", "next-item", "--tokens", fit["tokens"], "--movielens-100k",
                                 "--runs", str(runs), "--json", *(["--compare"] if compare else [])))
    rows = systems(workdir, "movielens", [], str(movielens / "items.jsonl"), evaluate)
    return ("Next-item retrieval on MovieLens-100k (943 users, leave-one-out; fit defaults on "
            "title/year/genre texts: 3 × 256, latent 32; `eval next-item` defaults)\n\n" +
            table(rows, [("recall@5", "recall@5"), ("recall@10", "recall@10"),
                         ("NDCG@5", "ndcg@5"), ("NDCG@10", "ndcg@10"), ("best epoch", "best_epoch")]))


TASKS = {"taxonomy": taxonomy, "hypernyms": hypernyms, "next-item": next_item}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="Also write the tables here.")
    options = parser.parse_args()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-reproduce-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sections = []
    for task in options.tasks.split(","):
        start = time.perf_counter()
        text = TASKS[task](workdir, options.runs)
        sections.append(f"{text}\n\n{options.runs} seeds; {(time.perf_counter() - start) / 60:.1f} "
                        "min for this task, fits included\n")
        print(sections[-1], flush=True)
    if options.out:
        options.out.write_text("\n".join(sections))


if __name__ == "__main__":
    main()
