"""A WordNet model's hierarchy in its model directory: nodes.parquet (names, glosses, lexnames,
depths, parents) and pairs.parquet (the closure with its seeded train/test split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hrqtok.errors import ArtifactError
from hrqtok.sources.hierarchy import Hierarchy

SPLITS = ("train", "test")


def write_nodes(hierarchy: Hierarchy, path: Path) -> None:
    names = hierarchy.names
    table = pa.table({
        "id": pa.array(names, pa.string()),
        "gloss": pa.array(hierarchy.glosses, pa.string()),
        "lexname": pa.array(hierarchy.lexnames, pa.string()),
        "depth": pa.array(hierarchy.depths, pa.int32()),
        "parents": pa.array([[names[p] for p in ps] for ps in hierarchy.parents],
                            pa.list_(pa.string())),
    })
    pq.write_table(table, path)


def write_pairs(hierarchy: Hierarchy, test: np.ndarray, path: Path) -> None:
    names = np.asarray(hierarchy.names, dtype=object)
    table = pa.table({
        "hyponym": pa.array(names[hierarchy.pairs[:, 0]], pa.string()),
        "hypernym": pa.array(names[hierarchy.pairs[:, 1]], pa.string()),
        "split": pa.array(np.where(test, SPLITS[1], SPLITS[0]), pa.string()),
    })
    pq.write_table(table, path)


def read_hierarchy(nodes_path: Path, pairs_path: Path) -> tuple[Hierarchy, np.ndarray]:
    """The stored hierarchy and its test mask (rows of ``pairs``)."""
    try:
        nodes = pq.read_table(nodes_path).to_pydict()
        pairs = pq.read_table(pairs_path).to_pydict()
    except (OSError, pa.ArrowException) as e:
        raise ArtifactError(f"{nodes_path.parent}: cannot read the stored hierarchy ({e})") from None
    names = nodes["id"]
    row = {name: i for i, name in enumerate(names)}
    try:
        parents = [[row[p] for p in ps] for ps in nodes["parents"]]
        closure = np.array([[row[u], row[v]] for u, v in zip(pairs["hyponym"], pairs["hypernym"])],
                           dtype=np.int64).reshape(-1, 2)
    except KeyError as e:
        raise ArtifactError(f"{pairs_path}: names a node {e} missing from {nodes_path.name}") from None
    hierarchy = Hierarchy(names, parents, nodes["gloss"], nodes["lexname"],
                          np.asarray(nodes["depth"], dtype=np.int64), closure)
    return hierarchy, np.asarray(pairs["split"]) == SPLITS[1]
