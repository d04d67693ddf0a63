"""EventToVideo: shapes at odd sizes, architectures, memory carried across calls and reset by mask_keep_memory."""

from __future__ import annotations

import pytest
import torch

from evframe.models.temporal import recurrent_modules, reset_recurrent_states
from evframe.tasks.e2v.network import EventToVideo, MergeSkip


def test_merge_skip_resizes_bilinearly_and_concatenates() -> None:
    x = torch.arange(4.0).view(1, 1, 1, 2, 2)
    skip = torch.full((1, 1, 3, 4, 4), 7.0)
    out = MergeSkip()(x, skip)
    assert out.shape == (1, 1, 4, 4, 4) and bool((out[:, :, 1:] == 7).all())
    # a constant image stays constant, and the corners of a 2x2 -> 4x4 bilinear resize keep the input values
    assert out[0, 0, 0, 0, 0] == 0 and out[0, 0, 0, -1, -1] == 3
    with pytest.raises(ValueError, match="same T and B"):
        MergeSkip()(x, torch.zeros(2, 1, 3, 4, 4))


@pytest.mark.parametrize("archi,cell,expected_rnns", [("all_rnn", "lstm", 2), ("mid_rnn", "gru", 1),
                                                      ("no_rnn", "lstm", 0)])
def test_output_shape_and_range_at_odd_sizes(archi: str, cell: str, expected_rnns: int) -> None:
    net = EventToVideo(5, 1, num_layers=2, base=4, cell=cell, archi=archi, separable=True, separable_hidden=True)
    assert len(recurrent_modules(net)) == expected_rnns
    out = net(torch.randn(3, 2, 5, 19, 26))
    assert out.shape == (3, 2, 1, 19, 26)
    assert bool(((out > 0) & (out < 1)).all())


def test_memory_carries_over_calls_and_resets_with_the_mask() -> None:
    torch.manual_seed(0)
    net = EventToVideo(2, 1, num_layers=2, base=4).eval()
    x = torch.randn(6, 2, 2, 16, 16)
    with torch.no_grad():
        whole = net(x)
        reset_recurrent_states(net, torch.zeros(2))
        halves = torch.cat([net(x[:3]), net(x[3:])])
        torch.testing.assert_close(halves, whole, atol=1e-6, rtol=1e-5)
        # stream 0 restarts (mask 0), stream 1 continues (mask 1)
        reset_recurrent_states(net, torch.tensor([0.0, 1.0]))
        again = net(torch.stack([x[:3, 0], x[3:, 1]], 1))
    # stream 0 replays the start of the sequence from a fresh state; stream 1 continues as if unbroken
    torch.testing.assert_close(again[:, 0], whole[:3, 0], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(again[:, 1], whole[3:, 1], atol=1e-3)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="archi='deep'"):
        EventToVideo(5, 1, archi="deep")
    with pytest.raises(ValueError, match="cell='rnn'"):
        EventToVideo(5, 1, cell="rnn")
    with pytest.raises(ValueError, match="expected"):
        EventToVideo(5, 1, num_layers=1)(torch.zeros(1, 3, 8, 8))
