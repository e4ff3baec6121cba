"""`hrqtok encode` at catalogue scale (issue 16, part 7): wall time and peak RSS of encoding
10^4, 10^5 and 10^6 items of 768-d vectors from Parquet, with the memory growth between sizes.

The vectors are clustered unit vectors, written a row group at a time (the generator's memory
stays flat too). The model is an HRQ-VAE (3 × 256 codes) fitted briefly on a 10,000-item
sample of the first catalogue: its quality does not matter here, its shape does. Each encode
is a separate `hrqtok encode` process whose peak RSS is read from wait4(); run it alone.

Usage: python benchmarks/encode_scale.py [--sizes 10000,100000,1000000] [--workdir DIR]
           [--code OLDER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import ROOT, hrqtok

DIM, CLUSTERS, ROW_GROUP = 768, 512, 65536


def write_vectors(path: Path, n: int, seed: int = 0) -> None:
    """n clustered unit vectors (id, embedding) in row groups of ROW_GROUP rows."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32()))])
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, schema) as writer:
        for start in range(0, n, ROW_GROUP):
            m = min(ROW_GROUP, n - start)
            x = centres[rng.integers(CLUSTERS, size=m)] + 0.5 * rng.normal(size=(m, DIM)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            offsets = pa.array(np.arange(m + 1, dtype=np.int32) * DIM)
            vectors = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1), pa.float32()))
            ids = pa.array([f"item{i:08d}" for i in range(start, start + m)])
            writer.write_table(pa.Table.from_arrays([ids, vectors], schema=schema))
    partial.rename(path)


def timed_encode(model: Path, items: Path, out: Path, code: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `hrqtok encode` process, run from the hrqtok
    source tree ``code`` (this one, or an older checkout to compare with)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(code)}
    process = subprocess.Popen([sys.executable, "-m", "hrqtok", "encode", str(items), "--model",
                                str(model), "--out", str(out), "--quiet"], cwd=code, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"encode of {items} failed")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="hrqtok source tree to run (default: this one), e.g. a checkout of "
                             "an earlier commit to measure against")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        write_vectors(workdir / f"vectors-{n}.parquet", n)
    model = workdir / "model"
    if not (model / "config.json").exists():
        hrqtok("fit", str(workdir / f"vectors-{sizes[0]}.parquet"), "--embedding-field",
               "embedding", "--sample", "10000", "--epochs", "5", "--warmup-epochs", "2",
               "--model", str(model), "--force")
    print(f"{DIM}-d vectors, HRQ-VAE 3 x 256; one `hrqtok encode` process per size, code from "
          f"{args.code}; files in {workdir}\n")
    print("| items | wall s | items/s | peak RSS MiB | RSS vs previous size |")
    print("| --- | --- | --- | --- | --- |")
    previous = None
    for n in sizes:
        out = workdir / f"tokens-{n}.parquet"
        seconds, rss = timed_encode(model, workdir / f"vectors-{n}.parquet", out, args.code)
        rows = pq.ParquetFile(out).metadata.num_rows
        assert rows == n, (rows, n)
        growth = f"{rss / previous - 1:+.1%}" if previous else ""
        print(f"| {n:,} | {seconds:.1f} | {n / seconds:,.0f} | {rss:,.0f} | {growth} |", flush=True)
        previous = rss


if __name__ == "__main__":
    main()
