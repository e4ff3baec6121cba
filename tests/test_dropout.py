"""The downstream transformer's CPU dropout (hrqtok.evaluation.dropout): nn.Dropout's contract
with a mask cut from 16-bit lanes of random words."""

import math

import pytest
import torch
from torch import nn

from hrqtok.config import Seq2SeqConfig
from hrqtok.evaluation.dropout import LANES, LaneDropout, keep_mask, use_lane_dropout
from hrqtok.evaluation.seq2seq import Seq2Seq


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_matches_p_rounded_to_a_lane(p):
    torch.manual_seed(0)
    count = 1_000_003  # not a multiple of 4: the last word is cut
    kept = keep_mask(torch.Size([count]), p)
    expected = 1 - round(p * LANES) / LANES
    assert abs(expected - (1 - p)) <= 0.5 / LANES
    # within 5 standard errors of a binomial share
    se = math.sqrt(expected * (1 - expected) / count)
    assert abs(float(kept.float().mean()) - expected) < 5 * se


def test_every_lane_of_a_word_is_uniform_and_independent():
    # random_() without a range leaves each word's top bit clear: the fourth lane would
    # then never fall below zero, and with p = 0.5 it would always be kept
    torch.manual_seed(1)
    kept = keep_mask(torch.Size([400_000, 4]), 0.5).float()
    se = math.sqrt(0.25 / 400_000)
    assert (kept.mean(0) - 0.5).abs().max() < 5 * se
    centred = kept - kept.mean(0)
    correlation = (centred.T @ centred) / len(kept) / 0.25
    off_diagonal = correlation[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 5 / math.sqrt(400_000)


def test_the_same_seed_gives_the_same_mask():
    torch.manual_seed(7)
    first = keep_mask(torch.Size([3, 5, 7]), 0.3)
    torch.manual_seed(7)
    assert torch.equal(first, keep_mask(torch.Size([3, 5, 7]), 0.3))
    assert first.shape == (3, 5, 7) and first.dtype == torch.bool


def test_training_zeroes_and_scales_and_the_gradient_follows_the_mask():
    dropout = LaneDropout(0.25).train()
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x)
    torch.manual_seed(3)
    mask = keep_mask(x.shape, 0.25)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, torch.where(mask, x / 0.75, 0.0))
    y.sum().backward()
    torch.testing.assert_close(x.grad, mask.double() / 0.75)
    assert 0 < int((y == 0).sum()) < y.numel()


def test_eval_mode_and_zero_p_are_the_identity():
    x = torch.randn(8, 8)
    assert LaneDropout(0.5).eval()(x) is x
    assert LaneDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LaneDropout(1.0)


def test_other_devices_keep_torchs_dropout():
    x = torch.empty(16, 4, device="meta")
    assert LaneDropout(0.1).train()(x).device.type == "meta"


def test_the_transformer_has_no_torch_dropout_module_left():
    model = Seq2Seq(Seq2SeqConfig(d_model=16, heads=2, feedforward=32, dropout=0.2), 20, 4)
    modules = list(model.modules())
    assert not [m for m in modules if type(m) is nn.Dropout]
    lanes = [m for m in modules if isinstance(m, LaneDropout)]
    # per encoder layer 3 (attention, feedforward, output), per decoder layer 4
    assert len(lanes) == 2 * 3 + 2 * 4 and {m.p for m in lanes} == {0.2}
    nested = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.3)))
    use_lane_dropout(nested)
    assert isinstance(nested[1][0], LaneDropout) and nested[1][0].p == 0.3
