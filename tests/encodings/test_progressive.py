"""Progressive level mask and its schedule."""

import pytest
import torch

from hashwfa.encodings.progressive import ProgressiveMask, level_weights, progressive_schedule
from hashwfa.errors import HashwfaError


@pytest.mark.parametrize(
    "active, expected",
    [
        (1.0, [1, 0, 0, 0, 0]),
        (1.25, [1, 0.25, 0, 0, 0]),
        (2.5, [1, 1, 0.5, 0, 0]),
        (3.0, [1, 1, 1, 0, 0]),
        (4.75, [1, 1, 1, 1, 0.75]),
        (5.0, [1, 1, 1, 1, 1]),
    ],
)
def test_level_weights_by_hand(active, expected):
    assert level_weights(active, 5).tolist() == expected


def test_mask_multiplies_each_levels_features():
    mask = ProgressiveMask(4, 2)
    x = torch.arange(1.0, 9.0).repeat(3, 1)  # [3, 8]
    assert torch.equal(mask(x), x)  # default: all levels
    mask.set_active_levels(2.5)
    assert mask.active_levels == 2.5
    expected = torch.tensor([1, 2, 3, 4, 2.5, 3.0, 0, 0]).repeat(3, 1)
    assert torch.equal(mask(x), expected)
    assert mask.mask.tolist() == [1, 1, 1, 1, 0.5, 0.5, 0, 0]
    mask.set_active_levels(1)
    assert torch.equal(mask(x), torch.tensor([1.0, 2, 0, 0, 0, 0, 0, 0]).repeat(3, 1))


def test_mask_gradient_is_masked():
    mask = ProgressiveMask(3, 1, active_levels=1.5)
    x = torch.ones(2, 3, requires_grad=True)
    mask(x).sum().backward()
    assert x.grad.tolist() == [[1, 0.5, 0], [1, 0.5, 0]]


def test_mask_is_a_buffer_not_state():
    mask = ProgressiveMask(4, 2, active_levels=2)
    assert "mask" in dict(mask.named_buffers())
    assert mask.state_dict() == {}  # training state, not model weights


@pytest.mark.parametrize("bad", [0.5, 4.01, float("nan"), "two", None])
def test_out_of_range_active_levels(bad):
    mask = ProgressiveMask(4, 2)
    with pytest.raises(HashwfaError, match="active_levels"):
        mask.set_active_levels(bad)


def test_schedule_defaults():
    # 16 levels over 200 epochs: 4 at the start, all 16 at epoch 100, linear between.
    assert progressive_schedule(0, 200, 16) == 4.0
    assert progressive_schedule(50, 200, 16) == 10.0
    assert progressive_schedule(100, 200, 16) == 16.0
    assert progressive_schedule(199, 200, 16) == 16.0
    values = [progressive_schedule(e, 200, 16) for e in range(200)]
    assert values == sorted(values)
    assert all(1 <= v <= 16 for v in values)


def test_schedule_edges():
    assert progressive_schedule(0, 10, 2) == 1.0  # max(1, 0.25 * 2)
    assert progressive_schedule(0, 10, 1) == 1.0
    assert progressive_schedule(0, 10, 16, ramp_fraction=0.0) == 16.0
    assert progressive_schedule(5, 10, 16, start_fraction=1.0) == 16.0
    assert progressive_schedule(2.5, 10, 8, start_fraction=0.5, ramp_fraction=1.0) == 5.0
    with pytest.raises(HashwfaError, match="ramp_fraction"):
        progressive_schedule(0, 10, 16, ramp_fraction=1.5)
    with pytest.raises(HashwfaError, match="n_epochs"):
        progressive_schedule(0, 0, 16)
