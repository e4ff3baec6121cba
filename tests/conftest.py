"""Seeds, dtypes, a deterministic fake embedder, small item files and a local S3 server shared
by the tests."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

SEEDS = list(range(20))
DTYPES = ["float32", "float64"]


class FakeEmbedder:
    """Deterministic stand-in for a sentence model: hashed bag of words, unit norm."""

    calls = 0

    def __init__(self, spec="fake", *, precision="float32", batch_size=32, dim=48, device="cpu"):
        self.identity = f"fake-{dim}"
        self.device = device
        self.dim = dim

    def embed(self, texts):
        FakeEmbedder.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[row, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
        out += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder (embeddings); the packaged MPNet copy and the
    WordNet folder built by `make setup` are shared."""
    from hrqtok import paths

    real = paths.cache_dir()
    monkeypatch.setenv("HRQTOK_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    for shared in ("models", "wordnet"):
        if (real / shared).exists():
            (tmp_path / "cache" / shared).symlink_to(real / shared)
    yield


@pytest.fixture
def fake_embedder(monkeypatch):
    import hrqtok.sources.embed_settings

    FakeEmbedder.calls = 0
    monkeypatch.setattr(hrqtok.sources.embed_settings, "SentenceTransformerEmbedder", FakeEmbedder)
    return FakeEmbedder


def clustered_vectors(n=120, dim=16, clusters=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def vector_items(tmp_path):
    """A JSONL file of 120 items with 16-d vectors in field 'vec'."""
    path = tmp_path / "items.jsonl"
    vectors = clustered_vectors()
    with open(path, "w") as f:
        for i, v in enumerate(vectors):
            f.write(json.dumps({"id": f"item{i:03d}", "vec": v.tolist()}) + "\n")
    return path


@pytest.fixture
def text_items(tmp_path):
    """A JSONL file of 60 short texts from three topics."""
    topics = {"animal": "dog cat horse lion tiger wolf", "vehicle": "car bus truck train bike van",
              "food": "bread rice soup cake pasta salad"}
    path = tmp_path / "texts.jsonl"
    with open(path, "w") as f:
        for i in range(60):
            topic, words = list(topics.items())[i % 3]
            w = words.split()
            f.write(json.dumps({"id": f"t{i}", "text": f"{topic} {w[i % 6]} {w[(i // 3) % 6]} no {i}"}) + "\n")
    return path


TINY_FIT = ["--levels", "2", "--codebook-size", "8", "--latent-dim", "4", "--hidden-dims", "32,16",
            "--epochs", "6", "--warmup-epochs", "2", "--batch-size", "32", "--quiet"]


@pytest.fixture
def fitted(tmp_path, vector_items):
    """A tiny model fitted on ``vector_items`` through the CLI."""
    from typer.testing import CliRunner

    from hrqtok.cli import app

    model = tmp_path / "model"
    result = CliRunner().invoke(app, ["fit", str(vector_items), "--model", str(model),
                                      "--embedding-field", "vec", *TINY_FIT])
    assert result.exit_code == 0, result.output
    return model


def tree_parents(branching=3, depth=3):
    """Direct parents of a complete tree (row 0 is the root), breadth first."""
    parents, level = [[]], [0]
    for _ in range(depth):
        nxt = []
        for p in level:
            for _ in range(branching):
                parents.append([p])
                nxt.append(len(parents) - 1)
        level = nxt
    return parents


BUCKET = "shop"


@pytest.fixture(scope="module")
def s3():
    """(filesystem, endpoint "host:port") of a fresh local S3-compatible server (moto's, on a
    free port) with one empty bucket; the environment points pyarrow at it for the module."""
    from pyarrow import fs

    from hrqtok import locations

    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1"),
                            ("AWS_ENDPOINT_URL", f"http://{endpoint}")):
            patch.setenv(name, value)
        locations.filesystem_of.cache_clear()  # filesystems are made from the environment
        filesystem = fs.S3FileSystem(endpoint_override=endpoint, scheme="http",
                                     allow_bucket_creation=True)
        filesystem.create_dir(BUCKET)
        yield filesystem, endpoint
        locations.filesystem_of.cache_clear()
    server.stop()


def upload(s3, local, key):
    """Copies a local file, or a folder's files, to ``s3://shop/key``; returns that URI."""
    filesystem, _ = s3
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        inner = f"{BUCKET}/{key}" + ("" if local.is_file() else f"/{path.relative_to(local)}")
        with filesystem.open_output_stream(inner) as f:
            f.write(path.read_bytes())
    return f"s3://{BUCKET}/{key}"
