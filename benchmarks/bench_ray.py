"""`--engine ray` against the local engine on this machine (issue 16, parts 5 and 7): wall
time of `hrqtok encode` on 768-d vectors and of `hrqtok embed` on the sample glosses, each as
a separate CLI process, with the tokens / vectors compared.

Three ways per task: the local engine; `--engine ray` starting a local cluster for the run
(what a user gets without setting anything up); and `--engine ray --ray-address auto` joined
to a cluster started beforehand with `ray start --head --num-cpus 2` (the cluster's start-up
left out, the actors' still in). Ray uses 2 workers of 1 thread each; the local engine's torch
uses both cores. Embedding starts from an empty embedding cache each time. Run it alone.

Usage: python benchmarks/bench_ray.py [--items 200000] [--texts data/wordnet_glosses.jsonl]
           [--skip-embed] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from _common import ROOT, hrqtok
from encode_scale import write_vectors

from hrqtok.paths import cache_dir

RAY = str(Path(sys.executable).with_name("ray"))


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hrqtok", *args, "--quiet"], cwd=ROOT, env=env,
                   check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def fresh_cache(workdir: Path, name: str) -> dict:
    """An environment whose embedding cache is empty; the packaged models are shared."""
    folder = workdir / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "models").symlink_to(cache_dir() / "models")
    return {**os.environ, "HRQTOK_CACHE": str(folder)}


def ways(workdir: Path):
    """(name, extra CLI options) of the three ways, with the joined cluster up for the last."""
    yield "local", ["--engine", "local"]
    yield "ray, own cluster", ["--engine", "ray", "--ray-workers", "2"]
    subprocess.run([RAY, "start", "--head", "--num-cpus", "2", "--include-dashboard=false",
                    f"--temp-dir={workdir / 'ray'}"], check=True, capture_output=True)
    try:
        yield "ray, joined (`ray start`)", ["--engine", "ray", "--ray-address", "auto",
                                            "--ray-workers", "2"]
    finally:
        subprocess.run([RAY, "stop"], check=True, capture_output=True)


def bench_encode(workdir: Path, n: int) -> None:
    vectors = workdir / f"vectors-{n}.parquet"
    write_vectors(vectors, n)
    model = workdir / "model"
    if not (model / "config.json").exists():
        hrqtok("fit", str(vectors), "--embedding-field", "embedding", "--sample", "10000",
               "--epochs", "5", "--warmup-epochs", "2", "--model", str(model), "--force")
    groups = pq.ParquetFile(vectors).metadata.num_row_groups
    print(f"\nencode {n:,} items of 768-d (HRQ-VAE 3 x 256), {groups} row groups\n")
    print("| engine | wall s | items/s | vs local | same bytes as local |")
    print("| --- | --- | --- | --- | --- |")
    base = None
    for i, (name, options) in enumerate(ways(workdir)):
        out = workdir / f"tokens-{i}.parquet"
        seconds = timed(["encode", str(vectors), "--model", str(model), "--out", str(out),
                         *options], dict(os.environ))
        base = base or seconds
        same = out.read_bytes() == (workdir / "tokens-0.parquet").read_bytes()
        print(f"| {name} | {seconds:.1f} | {n / seconds:,.0f} | {seconds / base:.2f}x | "
              f"{'yes' if same else 'NO'} |", flush=True)


def bench_embed(workdir: Path, texts: Path) -> None:
    n = sum(1 for line in texts.open() if line.strip())
    print(f"\nembed {n:,} texts of {texts.name} (MPNet float32, empty cache each time)\n")
    print("| engine | wall s | texts/s | vs local | max abs difference to local |")
    print("| --- | --- | --- | --- | --- |")
    base, first = None, None
    for i, (name, options) in enumerate(ways(workdir)):
        out = workdir / f"vectors-{i}.parquet"
        seconds = timed(["embed", str(texts), "--out", str(out), *options],
                        fresh_cache(workdir, f"cache-{i}"))
        x = np.stack(pq.read_table(out)["embedding"].to_numpy(zero_copy_only=False))
        base, first = base or seconds, x if first is None else first
        print(f"| {name} | {seconds:.1f} | {n / seconds:,.1f} | {seconds / base:.2f}x | "
              f"{np.abs(x - first).max():.1e} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--texts", type=Path, default=ROOT / "data" / "wordnet_glosses.jsonl")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-ray-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs; files in {workdir}")
    bench_encode(workdir, args.items)
    if not args.skip_embed:
        bench_embed(workdir, args.texts)


if __name__ == "__main__":
    main()
