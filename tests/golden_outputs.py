"""Golden outputs: what every command writes at fixed seeds on small data, for each quantizer
and both modes. They pin behaviour across refactors.

    python -m tests.golden_outputs            # compare with tests/golden/outputs.json
    python -m tests.golden_outputs --exact    # also every file's bytes (same machine only)
    python -m tests.golden_outputs --update   # rewrite the golden file (explain why in the commit)

tests/test_golden.py runs the comparison in the suite: token tables exactly, numbers to a
relative 1e-5 or 1e-6 absolute (another CPU may round a matrix product differently); ``--exact``
adds the sha256 of every written file (weights, Parquet; a model's fingerprint hashes the same
bytes), which only holds on one machine and torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "outputs.json"
# keys whose values change from run to run; temporary paths become "<tmp>/…"
VOLATILE = {"seconds", "train_seconds", "items_per_second", "pairs_per_second"}
# keys that hash the weights' bytes: another CPU's vector unit (AVX-512 or not) rounds the last
# float32 bit differently, so like the file hashes they only hold on one machine (--exact)
MACHINE = {"fingerprint"}
# floats: float32 results of order 1 differ by a few units of the last place between CPUs
# (seen: 4e-9 on a value of 8e-4, 6e-6 relative), far below what a change of behaviour moves
REL_TOL, ABS_TOL = 1e-5, 1e-6
_TMP = [""]
ITEM_QUANTIZERS = ("hrq", "rq", "hypervq", "hrq-kmeans", "rq-kmeans")
WORDNET_QUANTIZERS = ("hrq", "rq", "hrq-kmeans", "rq-kmeans")
NETWORK = ["--latent-dim", "4", "--hidden-dims", "16", "--epochs", "3", "--warmup-epochs", "2",
           "--batch-size", "32"]
# --node-optimizer rsgd and --burn-in-negatives uniform: the golden WordNet fits were written
# when they were the only rules
WORDNET = ["--wordnet", "--root", "feline.n.01", "--epochs", "3", "--burn-in-epochs", "2",
           "--latent-dim", "3", "--levels", "2", "--codebook-size", "4", "--eval-every", "2",
           "--node-optimizer", "rsgd", "--burn-in-negatives", "uniform"]
NO_RELEASE = ["--release-epochs", "0"]  # trained quantizers: the fits from before the release
TINY_SEQ2SEQ = ["--epochs", "1", "--d-model", "16", "--heads", "2", "--layers", "1",
                "--feedforward", "32", "--batch-size", "64"]


def _items(folder: Path) -> Path:
    """120 vectors in 6 clusters, 16-d, each with a two-level category path."""
    import numpy as np

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    cluster = rng.integers(6, size=120)
    x = centres[cluster] + 0.3 * rng.normal(size=(120, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    path = folder / "items.jsonl"
    with open(path, "w") as f:
        for i, (v, c) in enumerate(zip(x, cluster)):
            f.write(json.dumps({"id": f"item{i:03d}", "vec": v.tolist(),
                                "path": [f"group{c // 2}", f"cluster{c}"]}) + "\n")
    return path


def _run(args: list[str]) -> str:
    from typer.testing import CliRunner

    from hrqtok.cli import app

    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"hrqtok {' '.join(args)} exited {result.exit_code}: "
                           f"{result.output[-2000:]}")
    return result.stdout


def _stable(value):
    """JSON value without run-dependent keys."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE | MACHINE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and _TMP[0] and _TMP[0] in value:
        return value.replace(_TMP[0], "<tmp>")
    return value


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tokens(path: Path) -> list:
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pydict()
    return [[i, *t] for i, t in zip(table["id"], table["tokens"])]


def _json_lines(text: str) -> list:
    return [_stable(json.loads(line)) for line in text.splitlines() if line.strip()]


def _model_outputs(model: Path, out: dict, files: dict, name: str) -> None:
    tokens = model.parent / f"{model.name}-tokens.parquet"
    _run(["encode", "--model", str(model), "--out", str(tokens), "--quiet"])
    out[f"{name}/tokens"] = _tokens(tokens)
    out[f"{name}/inspect"] = _stable(json.loads(_run(["inspect", "--model", str(model), "--json"])))
    out[f"{name}/metrics"] = _stable(json.loads((model / "metrics.json").read_text()))
    first = " ".join(map(str, out[f"{name}/tokens"][0][1:]))
    out[f"{name}/decode"] = _json_lines(_run(["decode", first, "--model", str(model), "--vectors",
                                              "--quiet"]))
    files[f"{name}/encoded.parquet"] = _digest(tokens)
    for part in ("model.safetensors", "tokens.parquet"):
        files[f"{name}/{part}"] = _digest(model / part)


def generate() -> tuple[dict, dict]:
    """(outputs compared to a tolerance, sha256 of the files written)."""
    out: dict = {}
    files: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _TMP[0] = str(folder)
        items = _items(folder)
        for quantizer in ITEM_QUANTIZERS:
            model = folder / f"items-{quantizer}"
            network = [] if quantizer.endswith("kmeans") else NETWORK
            _run(["fit", str(items), "--embedding-field", "vec", "--model", str(model),
                  "--quantizer", quantizer, "--levels", "2", "--codebook-size", "8", *network,
                  "--seed", "0", "--quiet"])
            name = f"items/{quantizer}"
            _model_outputs(model, out, files, name)
            beam = _run(["encode", str(items), "--model", str(model), "--beam", "3", "--out", "-",
                         "--quiet"])
            out[f"{name}/encode-beam"] = _json_lines(beam)
            out[f"{name}/eval-taxonomy"] = _stable(json.loads(_run([
                "eval", "taxonomy", "--tokens", str(folder / f"{model.name}-tokens.parquet"),
                "--items", str(items), "--compare", "--pairs", "2000", "--json"])))
        for quantizer in WORDNET_QUANTIZERS:
            model = folder / f"wordnet-{quantizer}"
            # untuned, so that --beam applies (a tuned model refuses it): see wordnet/hrq-tuned
            untuned = [] if quantizer.endswith("kmeans") else ["--tune-epochs", "0", *NO_RELEASE]
            _run(["fit", *WORDNET, "--quantizer", quantizer, "--model", str(model), "--seed", "0",
                  *untuned, "--quiet"])
            name = f"wordnet/{quantizer}"
            _model_outputs(model, out, files, name)
            beam = _run(["encode", "--model", str(model), "--beam", "3", "--out", "-", "--quiet"])
            out[f"{name}/encode-beam"] = _json_lines(beam)
        model = folder / "wordnet-hrq-tuned"
        _run(["fit", *WORDNET, *NO_RELEASE, "--model", str(model), "--seed", "0", "--tune-epochs", "5",
              "--quiet"])
        _model_outputs(model, out, files, "wordnet/hrq-tuned")
        model = folder / "wordnet-hrq"
        out["wordnet/hrq/eval-hypernyms"] = _stable(json.loads(_run([
            "eval", "hypernyms", "--model", str(model), "--compare", *TINY_SEQ2SEQ, "--json",
            "--quiet"])))
    return out, files


def differences(expected, found, where: str = "") -> list[str]:
    """Where ``found`` differs from ``expected``: exact for strings and integers, floats to
    REL_TOL / ABS_TOL (NaN equals NaN)."""
    if isinstance(expected, dict) and isinstance(found, dict):
        keys = sorted(set(expected) | set(found))
        return [d for k in keys for d in (
            [f"{where}/{k}: missing" if k not in found else f"{where}/{k}: unexpected"]
            if (k in expected) != (k in found) else differences(expected[k], found[k], f"{where}/{k}"))]
    if isinstance(expected, list) and isinstance(found, list):
        if len(expected) != len(found):
            return [f"{where}: {len(found)} entries, expected {len(expected)}"]
        return [d for i, (e, f) in enumerate(zip(expected, found))
                for d in differences(e, f, f"{where}[{i}]")]
    if isinstance(expected, float) or isinstance(found, float):
        if isinstance(expected, (int, float)) and isinstance(found, (int, float)) and not (
                isinstance(expected, bool) or isinstance(found, bool)):
            if math.isnan(expected) and math.isnan(found):
                return []
            if math.isclose(expected, found, rel_tol=REL_TOL, abs_tol=ABS_TOL):
                return []
    elif expected == found and type(expected) is type(found):
        return []
    return [f"{where}: {found!r}, expected {expected!r}"]


def main(argv: list[str]) -> int:
    out, files = generate()
    found = json.loads(json.dumps({"outputs": out, "files": files}))
    if "--update" in argv:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    golden = json.loads(GOLDEN.read_text())
    problems = differences(golden["outputs"], found["outputs"], "outputs")
    if "--exact" in argv:
        problems += differences(golden["files"], found["files"], "files")
    for line in problems[:50]:
        print(line)
    print(f"{len(problems)} differences from {GOLDEN}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
