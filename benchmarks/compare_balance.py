"""`--balance sinkhorn` (every level) and `sinkhorn-last` (the last level) against nearest-code
assignment, for every quantizer on the sample
glosses (fit defaults: 3 × 256, MPNet embeddings from the cache): per-level perplexity,
collision rate, disambiguation vocabulary, reconstruction cosine, fit seconds, and the
downstream `eval taxonomy` scores (NMI of the first token with the top category, rank
correlation of shared prefix and shared category depth). Prints a markdown table.

Usage: python benchmarks/compare_balance.py [--quantizers hrq,rq,...] [--seed 0] [--workdir DIR]
Fits already in the workdir are reused.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT

from hrqtok.quantize.registry import QUANTIZERS

SAMPLE = str(ROOT / "data" / "wordnet_glosses.jsonl")


def hrqtok(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hrqtok", *args, "--quiet"], cwd=ROOT,
                            check=True, capture_output=True, text=True)
    return result.stdout


def row(quantizer: str, balance: str, seed: int, workdir: Path) -> dict:
    model = workdir / f"{quantizer}-{balance}-{seed}"
    if not (model / "metrics.json").exists():
        hrqtok("fit", SAMPLE, "--model", str(model), "--quantizer", quantizer, "--balance",
               balance, "--seed", str(seed), "--force")
    metrics = json.loads((model / "metrics.json").read_text())
    taxonomy = json.loads(hrqtok("eval", "taxonomy", "--tokens", str(model / "tokens.parquet"),
                                 "--items", SAMPLE, "--seed", str(seed), "--json"))
    scores = taxonomy["results"]["model"]
    table = metrics["table"]
    return {
        "quantizer": quantizer, "balance": balance,
        "perplexity": [level["perplexity"] for level in table["levels"]],
        "collisions": table["collisions"]["collision_rate"],
        "disambiguation": table["collisions"]["disambiguation_size"],
        "cosine": metrics["vectors"]["reconstruction"]["cosine"],
        "seconds": metrics["fit"]["seconds"],
        "nmi_level_1": scores["nmi_1"]["mean"] if "nmi_1" in scores else None,
        "rank_correlation": scores["rank_correlation"]["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-balance-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"sample glosses, fit defaults, seed {args.seed} (workdir {workdir})\n")
    print("| quantizer | balance | perplexity per level | collisions | disambiguation | "
          "cosine | fit s | taxonomy NMI L1 | rank corr. |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for quantizer in args.quantizers.split(","):
        for balance in ("none", "sinkhorn", "sinkhorn-last"):
            r = row(quantizer, balance, args.seed, workdir)
            nmi = f"{r['nmi_level_1']:.3f}" if r["nmi_level_1"] is not None else "—"
            print(f"| {quantizer} | {balance} | {' / '.join(f'{p:.0f}' for p in r['perplexity'])} "
                  f"| {r['collisions']:.2%} | {r['disambiguation']} | {r['cosine']:.4f} | "
                  f"{r['seconds']:.0f} | {nmi} | {r['rank_correlation']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
