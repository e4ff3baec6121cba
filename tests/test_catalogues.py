"""No collapse on the catalogues that used to collapse (issue 14): every quantizer, fit
defaults but for a smaller network trained at most TEST_EPOCHS epochs (the suite's time
budget; benchmarks/compare_robust.py fits with the full defaults), per-level perplexity floors and a collision ceiling
(tests/catalogues.py); and the training parts that make it so: standardised inputs, the
spread term, the refit of the deep codes, balanced k-means for the deep levels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hrqtok
from hrqtok.fit.spread import spread_loss
from hrqtok.geometry import Euclidean, PoincareBall
from hrqtok.metrics.usage import collision_stats, level_usage
from hrqtok.quantize.registry import QUANTIZERS
from tests.catalogues import catalogues

CATALOGUES = {c.name: c for c in catalogues()}
TEST_EPOCHS = 60
TEST_HIDDEN_DIMS = [128]  # instead of 512, 256, 128: a quarter of the time, the same verdicts


def _catalogue_fit(name: str, quantizer: str, **options):
    """The catalogue's fit with the suite's budget; returns (perplexity per level, collision
    rate, a description) over the rows that must differ."""
    catalogue = CATALOGUES[name]
    budget = ({"epochs": TEST_EPOCHS, "hidden_dims": TEST_HIDDEN_DIMS}
              if QUANTIZERS[quantizer].trained else {})
    tok = hrqtok.Tokenizer.fit(catalogue.vectors, quantizer=quantizer, levels=catalogue.levels,
                               codebook_size=catalogue.codebook_size, seed=0, **budget,
                               **options)
    codes = tok.table.codes
    if catalogue.distinct is not None:
        codes = codes[catalogue.distinct]
    perplexity = [level_usage(codes[:, i], catalogue.codebook_size)["perplexity"]
                  for i in range(catalogue.levels)]
    rate = collision_stats(codes)["collision_rate"]
    found = (f"perplexity {[round(p, 1) for p in perplexity]}, collisions {rate:.3f} "
             f"(birthday bound {catalogue.birthday_rate:.3f})")
    return perplexity, rate, found


@pytest.mark.parametrize("quantizer", list(QUANTIZERS))
@pytest.mark.parametrize("name", list(CATALOGUES))
def test_no_collapse(name, quantizer):
    catalogue = CATALOGUES[name]
    perplexity, rate, found = _catalogue_fit(name, quantizer)
    for level, (value, floor) in enumerate(zip(perplexity, catalogue.min_perplexity)):
        assert floor is None or value >= floor, f"level {level} collapsed: {found}"
    assert rate <= catalogue.max_collision_rate, f"too many collisions: {found}"


def test_hypervq_collapses_with_the_code_point_on_the_hyperplane():
    """The cause of HyperVQ's collapse, kept visible: with the HyperVQ paper's code point on
    the MLR hyperplane, each residual keeps half its cell's centre and the deep levels spend
    their codes on those halves; the mirror point (the default) does not."""
    catalogue = CATALOGUES["tight-clusters"]
    _, on_hyperplane, found = _catalogue_fit("tight-clusters", "hypervq",
                                             code_point="hyperplane")
    assert on_hyperplane > 0.8, found
    _, mirror, found = _catalogue_fit("tight-clusters", "hypervq")
    assert mirror <= catalogue.max_collision_rate < on_hyperplane, found


def _fit(vectors, **options):
    return hrqtok.Tokenizer.fit(vectors, quantizer=options.pop("quantizer", "hrq"), levels=2,
                                codebook_size=8, epochs=3, warmup_epochs=2,
                                hidden_dims=[32], latent_dim=8, seed=0, **options)


def test_standardisation_makes_the_fit_scale_free():
    """Tiny, unit and huge norms of the same vectors: the same tokens (the network sees the
    same standardised inputs), and reconstructions in each input's own units."""
    x = CATALOGUES["tight-clusters"].vectors[:200]
    tables = {scale: _fit(x * scale) for scale in (1e-4, 1.0, 1e4)}
    reference = tables[1.0].table.codes
    for scale, tok in tables.items():
        assert (tok.table.codes == reference).all(axis=1).mean() >= 0.99, scale
        model, unit = tok.model, tables[1.0].model
        assert not model.input_mean.any()  # scaled, not centred
        rms_norm = float(np.sqrt(((x.astype(np.float64) * scale) ** 2).sum(1).mean()))
        # fitted on the training split, not on all of x
        assert float(model.input_scale) == pytest.approx(rms_norm, 0.02)
        assert float(model.input_scale) / scale == pytest.approx(float(unit.input_scale), 1e-4)
        same = (tok.table.codes == reference).all(axis=1)
        np.testing.assert_allclose(tok.reconstruct(x * scale)[same] / scale,
                                   tables[1.0].reconstruct(x)[same], rtol=1e-2, atol=1e-3)


def test_models_fitted_with_centred_inputs_keep_their_mean(tmp_path):
    """Models fitted while standardisation also centred the inputs stored the mean in
    ``input_mean``; they load and encode with it."""
    from hrqtok.store.model_dir import load_model_dir

    x = CATALOGUES["tight-clusters"].vectors[:100]
    tok = _fit(x)
    mean = torch.from_numpy(x.mean(0))
    tok.model.input_mean.copy_(mean)
    centred_codes = tok.model.encode(torch.from_numpy(x)).numpy()
    loaded = load_model_dir(tok.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.model.input_mean.numpy(), mean.numpy())
    np.testing.assert_array_equal(loaded.model.encode(torch.from_numpy(x)).numpy(),
                                  centred_codes)
    assert (centred_codes != tok.table.codes).any()  # the mean is not a no-op


def test_unstandardised_and_old_models_load(tmp_path):
    """--no-standardise keeps the earlier network (no standardisation buffers); a config.json
    written before the option existed loads as such."""
    from hrqtok.store.model_dir import CHECKSUM, CONFIG, config_checksum, load_model_dir

    x = CATALOGUES["tight-clusters"].vectors[:100]
    tok = _fit(x, standardise=False)
    assert not hasattr(tok.model, "input_mean")
    path = tok.save(tmp_path / "model")
    config = json.loads((path / CONFIG).read_text())
    del config["model"]["standardise"]
    config[CHECKSUM] = config_checksum(config)
    (path / CONFIG).write_text(json.dumps(config))
    loaded = load_model_dir(path)
    assert loaded.model_config.standardise is False
    np.testing.assert_array_equal(loaded.model.encode(torch.from_numpy(x)).numpy(),
                                  tok.table.codes)


def test_hypervq_models_from_before_the_mirror_point_load_with_the_hyperplane_point(tmp_path):
    from hrqtok.store.model_dir import CHECKSUM, CONFIG, config_checksum, load_model_dir

    x = CATALOGUES["tight-clusters"].vectors[:100]
    tok = _fit(x, quantizer="hypervq", code_point="hyperplane")
    path = tok.save(tmp_path / "model")
    config = json.loads((path / CONFIG).read_text())
    assert config["model"]["code_point"] == "hyperplane"
    del config["model"]["code_point"]
    config[CHECKSUM] = config_checksum(config)
    (path / CONFIG).write_text(json.dumps(config))
    loaded = load_model_dir(path)
    assert loaded.model_config.code_point == "hyperplane"
    np.testing.assert_array_equal(loaded.model.encode(torch.from_numpy(x)).numpy(),
                                  tok.table.codes)
    assert _fit(x, quantizer="rq").model.config.code_point == ""  # codebooks: no code point


def test_spread_loss_is_scale_free_and_punishes_squeezed_clusters():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(40, 6)))
    flat = Euclidean()
    for scale in (1e-3, 1.0, 50.0):  # any scaled copy of the input's geometry costs nothing
        assert float(spread_loss(x, scale * x, flat)) < 1e-10
    ball = PoincareBall(1.0)
    assert float(spread_loss(x, ball.expmap0(1e-3 * x), ball)) < 1e-4  # near 0: flat
    squeezed = x.clone()
    squeezed[:20] = x[:20].mean(0) + 1e-3 * (x[:20] - x[:20].mean(0))
    assert float(spread_loss(x, squeezed, flat)) > 1.0
    duplicates = torch.cat([x[:10], x[:10]])
    latent = duplicates.clone().requires_grad_()
    value = spread_loss(duplicates, latent, flat)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(latent.grad).all()
    assert float(spread_loss(x[:2], x[:2], flat)) == 0.0


def test_refit_of_the_deep_codes_is_reported_and_kept_only_when_better():
    x = CATALOGUES["tight-clusters"].vectors
    tok = hrqtok.Tokenizer.fit(x, quantizer="rq", levels=3, codebook_size=16, seed=0,
                               epochs=20)
    row = tok.metrics["fit"]["refit_deep_codes"]
    assert row["kept"] == (row["collision_rate"] < row["collision_rate_before"])
    # on these tight clusters the deep codes collapse in training, and the refit undoes it
    assert row["kept"] and row["collision_rate"] < row["collision_rate_before"] - 0.1
    off = hrqtok.Tokenizer.fit(x, quantizer="rq", levels=3, codebook_size=16, seed=0,
                               epochs=20, refit_deep_codes=False)
    assert "refit_deep_codes" not in off.metrics["fit"]
    rate = collision_stats(tok.table.codes)["collision_rate"]
    assert rate < collision_stats(off.table.codes)["collision_rate"]


@pytest.mark.parametrize("quantizer", ["rq-kmeans", "hrq-kmeans"])
def test_balanced_deep_kmeans_keeps_the_first_level(quantizer):
    """Balanced k-means at levels 2.. leaves level 1 as plain k-means fits it, and spreads
    the deep levels where plain k-means piles the residuals onto one code."""
    x = CATALOGUES["tight-clusters"].vectors
    fits = {on: hrqtok.Tokenizer.fit(x, quantizer=quantizer, levels=3, codebook_size=16,
                                     seed=0, balanced_kmeans=on) for on in (False, True)}
    plain, balanced = fits[False].table.codes, fits[True].table.codes
    np.testing.assert_array_equal(plain[:, 0], balanced[:, 0])
    for level in (1, 2):
        assert (level_usage(balanced[:, level], 16)["perplexity"]
                > level_usage(plain[:, level], 16)["perplexity"])
    assert collision_stats(balanced)["collision_rate"] < collision_stats(plain)["collision_rate"]


def test_spread_weight_keeps_clusters_from_being_squeezed_in_the_latent():
    """Off by default; with --spread-weight the within-cluster share of the latent's variance
    stays nearer the input's, and the log reports the term."""
    from tests.catalogues import tight_clusters_with_labels

    x, labels = tight_clusters_with_labels()

    def within_share(tok) -> float:
        z = tok.model.manifold.logmap0(tok.model.latents(torch.from_numpy(x))).numpy()
        within = np.mean([z[labels == c].var(0).sum() for c in np.unique(labels)])
        return within / z.var(0).sum()

    fits = {w: hrqtok.Tokenizer.fit(x, quantizer="rq", levels=2, codebook_size=8, epochs=10,
                                    hidden_dims=[64], latent_dim=16, seed=0, spread_weight=w)
            for w in (0.0, 1.0)}
    assert all(row["spread"] == 0 for row in fits[0.0].log)
    assert all(np.isfinite(row["spread"]) and row["spread"] > 0 for row in fits[1.0].log)
    shares = {w: within_share(tok) for w, tok in fits.items()}
    assert shares[1.0] > 2 * shares[0.0], shares
