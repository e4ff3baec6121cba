"""A sentence-transformers model run by OpenVINO's CPU plugin (``--embed-backend openvino``).

The model's transformer is converted once per machine from the same local weights torch loads
(no download) and kept in the cache as OpenVINO IR; the pooling and normalisation after it run
as sentence-transformers' own modules, on the transformer's output.

- float32: OpenVINO with f32 inference (the reference; no faster than torch on 2 cores).
- bfloat16: the plugin's bf16 inference (AMX or AVX-512 BF16 where the CPU has them; without
  them it runs as f32, and the run says so: ``cpu_support``).
- int8: NNCF's static post-training quantization, calibrated on a fixed set of 300 packaged
  WordNet glosses (``calibration_texts.txt``), run with bf16 inference for the rest. The
  feed-forward blocks' output layers stay unquantized: quantizing them cost most of the
  accuracy (cosine to torch float32 on the sample glosses: mean 0.988 with them, 0.995
  without).

OpenVINO's and NNCF's usage telemetry is declined for this process (``_decline_telemetry``):
hrqtok sends nothing anywhere."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from hrqtok.errors import HrqtokError
from hrqtok.paths import cache_dir
from hrqtok.sources import packaged
from hrqtok.sources.cpu_support import has_int8_dot_products, openvino_bf16_native, precision_note

OPENVINO_PRECISIONS = ("float32", "bfloat16", "int8")
INFERENCE_HINT = {"float32": "f32", "bfloat16": "bf16", "int8": "bf16"}
RECIPE = "1"  # bump when the export or the quantization recipe changes: a new cache folder
CALIBRATION_BATCH = 8

log = logging.getLogger("hrqtok")


def calibration_texts() -> list[str]:
    text = resources.files("hrqtok.sources").joinpath("calibration_texts.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _decline_telemetry() -> None:
    """openvino_telemetry sends usage events unless a consent file in the home folder says no;
    answer no for this process, before model conversion or NNCF create its client."""
    try:
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:
        return
    opt_in_checker.OptInChecker.check = lambda self, *args, **kwargs: (
        opt_in_checker.ConsentCheckResult.DECLINED)


def _import_openvino():
    _decline_telemetry()
    try:
        import openvino
    except ImportError:
        raise HrqtokError("--embed-backend openvino needs OpenVINO: pip install "
                          "'hrqtok[openvino]'") from None
    return openvino


def _folder_fingerprint(target: str) -> str:
    """Names, sizes and times of a model folder's files (a changed model gets a new export)."""
    folder = Path(target)
    if not folder.is_dir():
        return target
    entries = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in folder.rglob("*") if p.is_file())
    return repr(entries)


def _warn_if_not_native(precision: str, core) -> None:
    """A warning line where this CPU makes ``precision`` no faster than float32."""
    if precision == "bfloat16":
        native = openvino_bf16_native(core)
    elif precision == "int8":
        native = has_int8_dot_products()
    else:
        return
    note = precision_note("openvino", precision, native)
    if note:
        log.warning(note)


class OpenVINOEmbedder:
    """The Embedder protocol (``identity``, ``embed``) on OpenVINO; loaded on first use."""

    def __init__(self, spec: str = packaged.DEFAULT_EMBEDDER, *, precision: str = "float32",
                 batch_size: int = 32, progress=None):
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"precision must be one of {OPENVINO_PRECISIONS}")
        self.spec, self.precision, self.batch_size = spec, precision, batch_size
        self.target, name = packaged.resolve(spec)
        self.identity = f"{name}@openvino-{precision}"
        self._model = None  # the sentence-transformers model (tokenizer, pooling)
        self._request = None  # an OpenVINO infer request of the compiled transformer
        self.progress = progress  # hears of the conversion, when no caller names one

    def export_dir(self) -> Path:
        """Where this model's IR lives in the cache: one folder per model, kind (float32 and
        bfloat16 share the float IR; they differ only in how it is compiled), recipe and
        OpenVINO / NNCF version."""
        kind = "int8" if self.precision == "int8" else "float"
        versions = [_import_openvino().__version__]
        if kind == "int8":
            import nncf

            versions.append(nncf.__version__)
        name = self.identity.rsplit("@", 1)[0]
        key = hashlib.sha256(repr((name, kind, _folder_fingerprint(self.target), RECIPE,
                                   versions)).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)
        return cache_dir() / "openvino" / f"{safe}-{kind}-{key}"

    def prepare(self, progress=None) -> None:
        """Loads the model, converting it first where the cache has no export yet (a minute
        for MPNet int8, reported to ``progress`` as one step)."""
        if self._request is not None:
            return
        progress = progress or self.progress
        from hrqtok.sources.embedder import load_sentence_transformer

        openvino = _import_openvino()
        self._model = load_sentence_transformer(self.spec, self.target, "cpu")
        folder = self.export_dir()
        if not (folder / "model.xml").is_file():
            step = f"convert to OpenVINO {self.precision} (once)"
            if progress:
                progress(step, 0, 1, None)
            self._export(openvino, folder)
            if progress:
                progress(step, 1, 1, None)
        import torch

        config = {"INFERENCE_PRECISION_HINT": INFERENCE_HINT[self.precision],
                  "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        core = openvino.Core()
        _warn_if_not_native(self.precision, core)
        compiled = core.compile_model(str(folder / "model.xml"), "CPU", config)
        self._request = compiled.create_infer_request()
        self._inputs = [port.any_name for port in compiled.inputs]

    def _export(self, openvino, folder: Path) -> None:
        """Converts (and for int8 quantizes) the transformer into a temporary folder, then
        renames it into place: a reader never sees half an export, and of two processes
        exporting at once one keeps its folder."""
        transformer = self._model[0].auto_model.eval()
        example = self._features(["an example text", "another one"], tensors="pt")
        # torch.jit's tracing warnings and NNCF's progress bars (hrqtok reports the step)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            converted = openvino.convert_model(transformer, example_input=example)
            if self.precision == "int8":
                converted = self._quantize(converted, transformer)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
        try:
            openvino.save_model(converted, str(staging / "model.xml"), compress_to_fp16=False)
            try:
                os.rename(staging, folder)
            except OSError:
                if not (folder / "model.xml").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _quantize(self, converted, transformer):
        import nncf
        import torch

        nncf.set_log_level(logging.ERROR)
        intermediate = transformer.config.intermediate_size
        # the feed-forward output layers (intermediate -> hidden), by their traced names
        keep = [f"__module.{name}/" for name, module in transformer.named_modules()
                if isinstance(module, torch.nn.Linear) and module.in_features == intermediate]
        texts = calibration_texts()
        batches = [self._features(texts[i:i + CALIBRATION_BATCH], tensors="np")
                   for i in range(0, len(texts), CALIBRATION_BATCH)]
        ignored = nncf.IgnoredScope(patterns=[f"{re.escape(k)}.*" for k in keep], validate=False)
        return nncf.quantize(converted, nncf.Dataset(batches), subset_size=len(texts),
                             model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored)

    def _tokenize(self, texts: list[str]) -> dict:
        tokenize = getattr(self._model, "preprocess", None) or self._model.tokenize
        return tokenize(texts)

    def _features(self, texts: list[str], tensors: str) -> dict:
        """The transformer's inputs for ``texts``, as torch tensors ("pt") or arrays ("np")."""
        features = self._tokenize(texts)
        names = ("input_ids", "attention_mask", "token_type_ids")
        return {k: (v if tensors == "pt" else v.numpy()) for k, v in features.items()
                if k in names}

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        self.prepare()
        out = None
        # longest first, as sentence-transformers batches: less padding in each batch
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            features = self._tokenize([texts[i] for i in rows])
            result = self._request.infer({name: features[name].numpy() for name in self._inputs})
            features["token_embeddings"] = torch.from_numpy(np.asarray(result[0]))
            with torch.no_grad():
                for module in list(self._model)[1:]:
                    features = module(features)
            vectors = features["sentence_embedding"].float().numpy()
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), np.float32)
            out[rows] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)
