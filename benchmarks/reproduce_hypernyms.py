"""Reproduction of the HRQ paper's hypernym-generation comparison (§4.1, Table 1) on the
mammal subtree: fits an HRQ and an RQ tokenizer with equal settings through the CLI, then
evaluates both and the random baseline with `hrqtok eval hypernyms` over 3 seeds, and prints
a markdown table of means ± std (the README shows it) plus the wall time.

Usage: python benchmarks/reproduce_hypernyms.py [--runs N] [--workdir DIR] [-- extra fit flags]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT

FIT = ["--wordnet", "--root", "mammal.n.01", "--latent-dim", "5", "--levels", "3",
       "--codebook-size", "32", "--seed", "0", "--quiet"]


def hrqtok(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hrqtok", *args], cwd=ROOT, check=True,
                            capture_output=True, text=True)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("fit_flags", nargs="*")
    options = parser.parse_args()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-reproduce-"))
    start = time.perf_counter()
    rows = []
    for geometry in ("hyperbolic", "euclidean"):
        model = workdir / f"mammals-{geometry}"
        if not model.exists():
            hrqtok("fit", *FIT, *options.fit_flags, "--geometry", geometry, "--model", str(model))
        report = json.loads(hrqtok("eval", "hypernyms", "--model", str(model), "--runs",
                                   str(options.runs), "--json", "--quiet",
                                   *(["--compare"] if geometry == "hyperbolic" else [])))
        fitted = json.loads((model / "metrics.json").read_text())
        for system, result in report["results"].items():
            name = {"model": "HRQ" if geometry == "hyperbolic" else "RQ", "random": "random"}[system]
            rows.append((name, result, fitted["table"]["collisions"]["collision_rate"]
                         if system == "model" else None))
    seconds = time.perf_counter() - start
    print(f"mammal subtree, k=3, s=32, latent 5; {options.runs} seeds; "
          f"`hrqtok eval hypernyms` defaults; {seconds / 60:.1f} min in all\n")
    print("| tokens | recall@10 | recall@1 | collisions |")
    print("| --- | --- | --- | --- |")
    for name, result, collisions in rows:
        cell = lambda key: f"{result[key]['mean']:.3f} ± {result[key]['std']:.3f}"  # noqa: E731
        print(f"| {name} | {cell('recall@10')} | {cell('recall@1')} | "
              f"{'' if collisions is None else f'{collisions:.1%}'} |")


if __name__ == "__main__":
    main()
