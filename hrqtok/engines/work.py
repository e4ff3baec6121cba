"""What `encode` and `embed` do to one chunk of items, the same on every engine: the local one
calls it in this process, the Ray engine on each actor, which gets it pickled before ``setup``
(small: no model, no embedder) and loads what it needs once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hrqtok.devices import resolve_device
from hrqtok.errors import ArtifactError, HrqtokError, InputError
from hrqtok.sources.embedder import EmbeddingCache, embed_texts
from hrqtok.sources.items import Items


@dataclass
class Chunk:
    """One chunk of items with what the work made of them, as an engine hands it back."""

    split: int  # the Ray engine: index of the part in its plan; -1 locally
    source: str
    ids: list
    lines: list[int]
    values: np.ndarray | None = None  # codes or vectors, a row per item
    # the Ray engine: raised at this point of the input (bad data, or an OSError as locally)
    error: HrqtokError | OSError | None = None


@dataclass
class EmbedWork:
    """Texts to vectors through the embedding cache at ``cache_path`` (a path, not
    $HRQTOK_CACHE: a worker's environment is the cluster's). ``make_embedder(device)`` is
    called on first use, so inputs with given vectors never load a model; ``embedder``: one
    made already (it stays in this process; a sentence model loads on first use anyway)."""

    make_embedder: Callable
    cache_path: Path
    device: str = "cpu"
    embedder: object = field(default=None, repr=False)
    _cache: EmbeddingCache | None = field(default=None, repr=False)

    def setup(self) -> None:
        self.device = str(resolve_device(self.device))

    def embed(self, items: Items) -> np.ndarray:
        if self.embedder is None:
            self.embedder = self.make_embedder(self.device)
        if self._cache is None:
            self._cache = EmbeddingCache(self.cache_path)
        return embed_texts(items.texts, self.embedder, cache=self._cache)

    def __call__(self, items: Items) -> np.ndarray:
        return self.embed(items)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __getstate__(self) -> dict:  # what is loaded stays where it was loaded
        return {**self.__dict__, "embedder": None, "_cache": None}


@dataclass
class EncodeWork:
    """Items (given vectors, or texts embedded by ``embedding``) to (vectors, codes) with the
    model fitted at ``model_path``. ``model``: the driver's copy, loaded already; it does not
    travel (an actor loads the model itself, once, and checks it is the same ``fingerprint``:
    a model replaced in between is an error, not other tokens)."""

    model_path: str
    fingerprint: str
    input_dim: int
    beam: int
    embedding: EmbedWork
    model: torch.nn.Module | None = field(default=None, repr=False)

    def setup(self) -> None:
        self.embedding.setup()
        if self.model is None:
            self.model = _load_same_model(self.model_path, self.fingerprint)
        self.model.to(self.embedding.device)

    def vectors(self, items: Items) -> np.ndarray:
        vectors = items.vectors if items.vectors is not None else self.embedding.embed(items)
        if vectors.shape[1] != self.input_dim:
            raise InputError(
                f"vectors have {vectors.shape[1]} dimensions but the model at "
                f"{self.model_path} was fitted on {self.input_dim}; use the same embedder "
                "or --embedding-field as at fit", source=items.source, line=items.lines[0])
        return vectors

    def codes(self, vectors: np.ndarray) -> np.ndarray:
        return self.model.encode(torch.from_numpy(vectors), beam=self.beam).numpy()

    def __call__(self, items: Items) -> np.ndarray:
        return self.codes(self.vectors(items))

    def close(self) -> None:
        self.embedding.close()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None}


def _load_same_model(path: str, fingerprint: str) -> torch.nn.Module:
    from hrqtok.store.model_dir import load_model_dir

    loaded = load_model_dir(path)
    if loaded.fingerprint != fingerprint:
        raise ArtifactError(f"{path}: the model changed while encoding (fingerprint "
                            f"{loaded.fingerprint[:12]}, expected {fingerprint[:12]}); run "
                            "encode again")
    return loaded.model
