"""`hrqtok inspect --plot report.png`: one figure a person can read at a glance.

Panels: code usage per level (codes sorted by count), collision-group sizes, the training
curves of train_log.jsonl (reconstruction or ranking loss, perplexity per level, collisions
per epoch; WordNet models add MR / MAP), and the latent space in 2-d: the items' quantized
points (a WordNet model's node embeddings) seen through the top two principal directions of
log0, drawn in the Poincaré disk for hyperbolic models and in the plane for Euclidean ones,
coloured by first token, with level 0's codes marked. matplotlib (Agg) is imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hrqtok.errors import HrqtokError
from hrqtok.store.model_dir import LOG, WORDNET
from hrqtok.store.tables import TokenTable

PANELS = ("code usage", "collision groups", "training", "latent space")
MAX_POINTS = 5000  # items drawn in the latent panel (a seeded sample beyond this)


def _log_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a damaged log costs its curves, not the report
    return rows


def _usage(ax, codes: np.ndarray, size: int) -> None:
    for level in range(codes.shape[1]):
        counts = np.sort(np.bincount(codes[:, level], minlength=size))[::-1]
        ax.plot(np.arange(1, size + 1), counts, label=f"level {level}")
    ax.set_title("code usage per level (sorted)")
    ax.set_xlabel("code rank")
    ax.set_ylabel("items")
    ax.legend(fontsize=8)


def _collisions(ax, codes: np.ndarray) -> None:
    _, counts = np.unique(codes, axis=0, return_counts=True) if len(codes) else (None, np.ones(0))
    sizes, how_many = np.unique(counts, return_counts=True)
    ax.bar(sizes, how_many * sizes, color="tab:red")
    ax.set_yscale("log")
    ax.set_xticks(sizes[:20])
    ax.set_title("items by collision-group size (1 = a unique id)")
    ax.set_xlabel("items sharing one k-code id")
    ax.set_ylabel("items")


def _training(ax, rows: list[dict]) -> None:
    epochs = [r for r in rows if "epoch" in r]
    if not epochs:
        ax.text(0.5, 0.5, "no epochs (a k-means quantizer)", ha="center", va="center")
        ax.set_title("training")
        return
    x = [r["epoch"] for r in epochs]
    key = "reconstruction" if "reconstruction" in epochs[0] else "rank_loss"
    ax.plot(x, [r.get(key) for r in epochs], color="black", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " "))
    twin = ax.twinx()
    with_usage = [r for r in epochs if "perplexity" in r or "collision_rate" in r]
    for level in range(len(with_usage[0].get("perplexity", [])) if with_usage else 0):
        twin.plot([r["epoch"] for r in with_usage], [r["perplexity"][level] for r in with_usage],
                  linestyle="--", label=f"perplexity L{level}")
    if with_usage:
        twin.plot([r["epoch"] for r in with_usage], [100 * r["collision_rate"] for r in with_usage],
                  color="tab:red", linestyle=":", label="collisions %")
    checks = [r for r in epochs if "train_map" in r]
    if checks:
        twin.plot([r["epoch"] for r in checks], [100 * r["train_map"] for r in checks],
                  color="tab:green", marker="o", label="train MAP %")
        twin.plot([r["epoch"] for r in checks], [r["train_mean_rank"] for r in checks],
                  color="tab:purple", marker="s", label="train MR")
    twin.legend(fontsize=7, loc="upper right")
    ax.set_title("training curves")


def _latent(ax, points: np.ndarray, first: np.ndarray, codes0: np.ndarray, manifold,
            hyperbolic: bool) -> None:
    tangent = manifold.logmap0(torch.from_numpy(points)).numpy()
    centre = tangent.mean(0)
    _, _, axes = np.linalg.svd(tangent - centre, full_matrices=False)
    basis = axes[:2].T if axes.shape[0] >= 2 else np.eye(tangent.shape[1], 2)

    def view(v: np.ndarray) -> np.ndarray:
        flat = (v - centre) @ basis
        if not hyperbolic:
            return flat
        # the 2-d slice of the ball: exp0 of the projected tangent vectors (c = 1 shape)
        norm = np.linalg.norm(flat, axis=1, keepdims=True).clip(1e-12)
        return np.tanh(norm) * flat / norm

    xy = view(tangent)
    ax.scatter(xy[:, 0], xy[:, 1], c=first % 20, cmap="tab20", s=4, alpha=0.7)
    code_xy = view(manifold.logmap0(torch.from_numpy(codes0)).numpy())
    ax.scatter(code_xy[:, 0], code_xy[:, 1], marker="x", color="black", s=18, linewidths=0.8,
               label="level-0 codes")
    if hyperbolic:
        from matplotlib.patches import Circle

        ax.add_patch(Circle((0, 0), 1.0, fill=False, color="grey"))
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("latent space (Poincaré disk)" if hyperbolic else "latent space (plane)")


def plot_report(loaded, table: TokenTable, out: str | Path) -> dict:
    """Render the figure of model directory ``loaded`` (a store.model_dir.ModelDir) and token
    ``table`` to ``out`` (PNG, or any format matplotlib knows by suffix), atomically. Returns
    {"path", "panels", "width", "height"}."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HrqtokError("inspect --plot needs matplotlib: pip install 'hrqtok[plot]'") from None
    from hrqtok.atomic import atomic_path

    cfg = loaded.model_config
    codes = table.codes.astype(np.int64)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.permutation(len(codes))[:MAX_POINTS])
    with torch.no_grad():
        if loaded.kind == WORDNET:
            points = loaded.model.embeddings.detach()[torch.from_numpy(keep)]
        else:
            points = loaded.model.quantizer.decode_codes(torch.from_numpy(codes[keep]))
        points = points.double().numpy()
        codes0 = loaded.model.quantizer.points(0).detach().double().numpy()
    figure, axes = plt.subplots(2, 2, figsize=(13, 10), dpi=100)
    _usage(axes[0, 0], codes, cfg.codebook_size)
    _collisions(axes[0, 1], codes)
    _training(axes[1, 0], _log_rows(loaded.path / LOG))
    _latent(axes[1, 1], points, codes[keep, 0], codes0, loaded.model.manifold,
            cfg.geometry == "hyperbolic")
    figure.suptitle(f"{loaded.path.name}: {cfg.quantizer}, {cfg.levels} × {cfg.codebook_size} "
                    f"codes, {len(table):,} {'nouns' if loaded.kind == WORDNET else 'items'}")
    figure.tight_layout()
    suffix = Path(out).suffix.lstrip(".") or "png"
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format=suffix)
    width, height = (int(v) for v in figure.get_size_inches() * figure.dpi)
    plt.close(figure)
    return {"path": str(out), "panels": list(PANELS), "width": width, "height": height}
