"""How items are embedded: the sentence model, its precision and backend (``EmbedSettings``,
recorded in a model's config.json so that encode embeds as fit did), and the embedder they
make."""

from __future__ import annotations

from dataclasses import dataclass

from hrqtok.devices import resolve_device
from hrqtok.errors import OptionError
from hrqtok.sources.embedder import (
    BACKENDS,
    PRECISIONS,
    TORCH_PRECISIONS,
    Embedder,
    ProgressFn,
    SentenceTransformerEmbedder,
)
from hrqtok.sources.packaged import DEFAULT_EMBEDDER


@dataclass(frozen=True)
class EmbedSettings:
    embedder: str = DEFAULT_EMBEDDER  # name, folder, or hub name
    precision: str = "float32"  # "bfloat16"; "int8" with the openvino backend
    batch_size: int = 32
    backend: str = "torch"  # or "openvino" (the CPU; see sources/openvino_embedder.py)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise OptionError("--embed-backend", f"expected one of {', '.join(BACKENDS)}, "
                                                 f"got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise OptionError("--embed-precision", f"expected one of {', '.join(PRECISIONS)}, "
                                                   f"got {self.precision!r}")
        if self.backend == "torch" and self.precision not in TORCH_PRECISIONS:
            raise OptionError("--embed-precision", f"{self.precision} runs on OpenVINO only: "
                                                   "add --embed-backend openvino")

    def record(self) -> dict:
        """config.json's "embedder" object (the backend only when it is not torch, so that
        older hrqtok versions read a torch model's config as before)."""
        return {"spec": self.embedder, "precision": self.precision,
                **({"backend": self.backend} if self.backend != "torch" else {})}

    @classmethod
    def from_record(cls, record: dict) -> EmbedSettings:
        return cls(record.get("spec", DEFAULT_EMBEDDER), record.get("precision", "float32"),
                   backend=record.get("backend", "torch"))


def make_embedder(settings: EmbedSettings, device: str = "auto",
                  progress: ProgressFn | None = None) -> Embedder:
    """The embedder ``settings`` name, on ``device`` (torch's; OpenVINO runs on the CPU
    whatever the device, which then only places the fit or encode: callers resolve "auto"
    before this, so a GPU here need not be the user's choice). ``progress`` (this process
    only, not a Ray actor's) hears of a slow first load, OpenVINO's one-time conversion."""
    if settings.backend == "openvino":
        from hrqtok.sources.openvino_embedder import OpenVINOEmbedder

        return OpenVINOEmbedder(settings.embedder, precision=settings.precision,
                                batch_size=settings.batch_size, progress=progress)
    return SentenceTransformerEmbedder(settings.embedder, precision=settings.precision,
                                       batch_size=settings.batch_size,
                                       device=str(resolve_device(device)))
