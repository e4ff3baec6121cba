import numpy as np
import pytest
import torch

from hrqtok.config import ModelConfig, TrainConfig
from hrqtok.fit.items import fit_model
from tests.conftest import clustered_vectors

TINY = dict(input_dim=16, hidden_dims=(32,), latent_dim=4, levels=2, codebook_size=8)


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_fit_learns_uses_codes_and_logs(geometry):
    x = torch.from_numpy(clustered_vectors())
    result = fit_model(x, ModelConfig(geometry=geometry, **TINY),
                       TrainConfig(epochs=15, warmup_epochs=3, batch_size=32, patience=50))
    log = result.log
    assert [row["phase"] for row in log] == ["warm-up"] * 3 + ["train"] * 15
    assert log[-1]["reconstruction"] < log[0]["reconstruction"]
    assert min(log[-1]["utilisation"]) >= 0.75  # k-means init + revival keep codes alive
    assert all(np.isfinite(row["loss"]) for row in log)
    assert result.best_epoch == min((r for r in log if r["phase"] == "train"),
                                    key=lambda r: r["validation_loss"])["epoch"]
    for p in result.model.parameters():
        assert torch.isfinite(p).all()


@pytest.mark.parametrize("seed", range(8))
def test_no_nan_with_inputs_of_large_norm(seed):
    # Unnormalised inputs put the hyperbolic encoder's points at the ball's boundary.
    x = torch.from_numpy(clustered_vectors(seed=seed)) * 50
    result = fit_model(x, ModelConfig(**TINY), TrainConfig(epochs=3, warmup_epochs=1, seed=seed))
    for p in result.model.parameters():
        assert torch.isfinite(p).all()
    assert torch.isfinite(result.model.decode_codes(result.model.encode(x))).all()


def test_same_seed_same_codes_other_seed_other_codes():
    x = torch.from_numpy(clustered_vectors())
    run = lambda seed: fit_model(x, ModelConfig(**TINY), TrainConfig(epochs=4, warmup_epochs=1, seed=seed)).model.encode(x)
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_interrupt_keeps_the_best_model_so_far():
    x = torch.from_numpy(clustered_vectors())

    def stop_after_three_training_epochs(phase, done, total, row):
        if phase == "train" and done == 5:
            raise KeyboardInterrupt

    result = fit_model(x, ModelConfig(**TINY), TrainConfig(epochs=50, warmup_epochs=2),
                       progress=stop_after_three_training_epochs)
    assert result.stopped == "interrupted" and len(result.log) == 5
    assert result.model.encode(x).shape == (len(x), 2)


def test_interrupt_during_warm_up_still_gives_codebooks():
    x = torch.from_numpy(clustered_vectors())

    def stop(phase, done, total, row):
        raise KeyboardInterrupt

    result = fit_model(x, ModelConfig(**TINY), TrainConfig(epochs=5, warmup_epochs=3), progress=stop)
    assert result.stopped == "interrupted"
    assert len(torch.unique(result.model.encode(x)[:, 0])) > 1


def test_early_stopping():
    x = torch.from_numpy(clustered_vectors())
    result = fit_model(x, ModelConfig(**TINY), TrainConfig(epochs=300, warmup_epochs=0, patience=2, learning_rate=1e-2))
    assert result.stopped == "early-stopped" and len(result.log) < 300
