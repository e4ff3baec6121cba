"""inspect --plot: real models rendered, the image checked (size, not blank, a panel per part)."""

import matplotlib.image
import numpy as np
import pytest

from tests.conftest import TINY_FIT
from tests.test_cli import run

WORDNET = ["--wordnet", "--root", "feline.n.01", "--epochs", "4", "--burn-in-epochs", "2",
           "--latent-dim", "3", "--levels", "2", "--codebook-size", "4", "--eval-every", "2", "-q"]


def _quadrants(image: np.ndarray) -> list[np.ndarray]:
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return [image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:]]


@pytest.mark.parametrize("kind", ["items-hrq", "items-rq-kmeans", "wordnet"])
def test_the_figure_has_four_readable_panels(tmp_path, vector_items, kind):
    model = tmp_path / "m"
    if kind == "wordnet":
        args = ["fit", *WORDNET, "--model", model]
    elif kind == "items-hrq":
        args = ["fit", vector_items, "--embedding-field", "vec", "--model", model, *TINY_FIT]
    else:
        args = ["fit", vector_items, "--embedding-field", "vec", "--model", model, "--quantizer",
                "rq-kmeans", "--levels", "2", "--codebook-size", "8", "-q"]
    assert run(*args).exit_code == 0
    out = tmp_path / "report.png"
    result = run("inspect", "--model", model, "--plot", out)
    assert result.exit_code == 0, result.output
    assert f"to {out}" in " ".join(result.stderr.split())
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (1000, 1300)
    for panel in _quadrants(image[:, :, :3]):  # each part drawn, none blank
        assert panel.std() > 0.05 and (panel < 0.5).mean() > 0.005


def test_plot_is_refused_over_an_input_and_in_the_model(tmp_path, vector_items):
    model = tmp_path / "m"
    assert run("fit", vector_items, "--embedding-field", "vec", "--model", model, "--quantizer",
               "rq-kmeans", "--levels", "2", "--codebook-size", "8", "-q").exit_code == 0
    before = vector_items.read_bytes()
    assert run("inspect", vector_items, "--model", model, "--plot", vector_items).exit_code == 2
    assert vector_items.read_bytes() == before
    assert run("inspect", "--model", model, "--plot", model / "x.png").exit_code == 2
