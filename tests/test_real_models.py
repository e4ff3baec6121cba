"""Real sentence-transformers models from the installed packages (set up by `make setup`)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hrqtok.cli import app
from hrqtok.sources import packaged
from hrqtok.sources.embedder import (
    EmbeddingCache,
    SentenceTransformerEmbedder,
    embed_texts,
)
from tests.conftest import TINY_FIT

pytestmark = pytest.mark.slow
TEXTS = ["A small dog is running in the park.", "A puppy runs across the grass.",
         "The stock market fell sharply today."]


def test_minilm_package_embeds_and_the_cache_answers_the_second_time(tmp_path):
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    assert embedder.target == str(packaged.minilm_dir())
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    vectors = embed_texts(TEXTS, embedder, cache=cache)
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    embedder.embed = None  # a second call must not embed anything
    assert np.array_equal(embed_texts(TEXTS, embedder, cache=cache), vectors)


def test_default_mpnet_from_the_packaged_parts(tmp_path):
    folder = packaged.mpnet_dir()
    assert folder is not None, "run `make setup`: the all-mpnet-base-v2 part packages are missing"
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    items = tmp_path / "items.jsonl"
    with open("data/wordnet_glosses.jsonl") as src:
        items.write_text("".join(next(src) for _ in range(40)))
    model = tmp_path / "m"
    result = CliRunner().invoke(app, ["fit", str(items), "--model", str(model), *TINY_FIT])
    assert result.exit_code == 0, result.output
    config = json.loads((model / "config.json").read_text())
    assert config["model"]["input_dim"] == 768 and config["embedder"]["spec"] == "all-mpnet-base-v2"


def test_unknown_hub_name_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    from hrqtok.errors import HrqtokError

    # Offline at once, instead of waiting for the hub's connection retries.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(HrqtokError, match="cannot load embedding model 'no-such-org/no-such-model'"):
        SentenceTransformerEmbedder("no-such-org/no-such-model").embed(["x"])
