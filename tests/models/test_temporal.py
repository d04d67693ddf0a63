"""ConvRNN and sequence helpers: hand-computed cells, streaming state, reset masks, truncated BPTT."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evframe.models.temporal import (
    BinHistory,
    ConvRNN,
    batch_to_time,
    clear_recurrent_states,
    detach_recurrent_states,
    recurrent_modules,
    reset_recurrent_states,
    seq_wise,
    time_to_batch,
)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_time_batch_round_trip_and_seq_wise():
    x = torch.randn(3, 4, 5, 6, 7)
    flat, b = time_to_batch(x)
    assert flat.shape == (12, 5, 6, 7) and b == 4
    assert torch.equal(flat[1 * 4 + 2], x[1, 2])  # time-major
    assert torch.equal(batch_to_time(flat, b), x)
    conv = nn.Conv2d(5, 2, 3, padding=1)
    y = seq_wise(conv)(x)
    assert y.shape == (3, 4, 2, 6, 7)
    assert torch.allclose(y[2], conv(x[2]), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        batch_to_time(flat, 5)
    with pytest.raises(ValueError, match="5-D"):
        seq_wise(conv)(flat)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("stride,separable", [(1, False), (2, False), (2, True)])
def test_shapes(cell, stride, separable):
    rnn = ConvRNN(3, 8, kernel_size=3, stride=stride, padding=1, cell=cell, separable=separable)
    y = rnn(torch.randn(4, 2, 3, 10, 12))
    assert y.shape == (4, 2, 8, 10 // stride, 12 // stride)
    gates = 4 if cell == "lstm" else 3
    assert rnn.conv_x2h(torch.randn(1, 2, 3, 10, 12)).shape == (1, 2, gates * 8, 10 // stride, 12 // stride)
    assert rnn.timepool.prev_h.shape == (2, 8, 10 // stride, 12 // stride)


def _pointwise_rnn(cell: str, wx: list[float], bx: list[float], wh: list[float]) -> ConvRNN:
    rnn = ConvRNN(1, 1, kernel_size=1, padding=0, cell=cell, hidden_kernel_size=1)
    conv = rnn.conv_x2h.module[0]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(wx).view(-1, 1, 1, 1))
        conv.bias.copy_(torch.tensor(bx))
        rnn.timepool.conv_h2h.weight.copy_(torch.tensor(wh).view(-1, 1, 1, 1))
    return rnn


X = [[1.0, -1.0], [0.5, 2.0], [-0.5, 0.0]]  # (T=3, W=2) input, one channel, B=1, H=1


def test_gru_matches_hand_computation():
    wx, bx, wh = [0.5, -1.0, 2.0], [0.1, 0.2, -0.3], [0.7, 0.3, -0.4]
    rnn = _pointwise_rnn("gru", wx, bx, wh)
    out = rnn(torch.tensor(X).view(3, 1, 1, 1, 2))
    for px in range(2):
        h = 0.0
        for t in range(3):
            x = X[t][px]
            r = _sig(wx[0] * x + bx[0] + wh[0] * h)
            z = _sig(wx[1] * x + bx[1] + wh[1] * h)
            n = math.tanh(wx[2] * x + bx[2] + r * (wh[2] * h))
            h = (1 - z) * n + z * h
            assert out[t, 0, 0, 0, px].item() == pytest.approx(h, abs=1e-6)


def test_lstm_matches_hand_computation():
    wx, bx, wh = [0.5, -1.0, 2.0, 1.5], [0.1, 0.2, -0.3, 0.0], [0.7, 0.3, -0.4, 0.9]
    rnn = _pointwise_rnn("lstm", wx, bx, wh)
    out = rnn(torch.tensor(X).view(3, 1, 1, 1, 2))
    for px in range(2):
        h = c = 0.0
        for t in range(3):
            x = X[t][px]
            i, f, o, g = (wx[k] * x + bx[k] + wh[k] * h for k in range(4))
            c = _sig(f) * c + _sig(i) * math.tanh(g)
            h = _sig(o) * math.tanh(c)
            assert out[t, 0, 0, 0, px].item() == pytest.approx(h, abs=1e-6)
        assert rnn.timepool.prev_c[0, 0, 0, px].item() == pytest.approx(c, abs=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_call_equals_two_calls(cell):
    torch.manual_seed(0)
    rnn = ConvRNN(2, 4, cell=cell)
    x = torch.randn(4, 3, 2, 6, 6)
    full = rnn(x)
    rnn.clear()
    halves = torch.cat([rnn(x[:2]), rnn(x[2:])])
    assert torch.allclose(full, halves, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reset_mask_zeroes_exactly_the_masked_streams(cell):
    torch.manual_seed(0)
    rnn = ConvRNN(2, 4, cell=cell)
    x1, x2 = torch.randn(2, 3, 2, 5, 5), torch.randn(2, 3, 2, 5, 5)
    rnn(x1)
    rnn.reset(torch.tensor([1.0, 0.0, 1.0]))
    out = rnn(x2)
    rnn.clear()
    continued = rnn(torch.cat([x1, x2]))[2:]
    rnn.clear()
    fresh = rnn(x2)
    assert torch.allclose(out[:, [0, 2]], continued[:, [0, 2]], atol=1e-6)
    assert torch.allclose(out[:, 1], fresh[:, 1], atol=1e-6)
    assert not torch.allclose(out[:, 1], continued[:, 1], atol=1e-3)  # the memory did matter


def test_state_reinitialised_for_another_batch_size():
    rnn = ConvRNN(2, 4, cell="gru")
    rnn(torch.randn(2, 3, 2, 5, 5))
    rnn.reset(torch.ones(2))  # another batch size: the state is dropped
    assert rnn.timepool.prev_h is None
    x = torch.randn(2, 2, 2, 5, 5)
    out = rnn(x)
    rnn.clear()
    assert torch.allclose(out, rnn(x))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        rnn.reset(torch.ones(2, 1))


def test_detach_stops_gradient_into_previous_batch():
    torch.manual_seed(0)
    for detach in (False, True):
        rnn = ConvRNN(2, 4, cell="lstm")
        x1 = torch.randn(2, 1, 2, 5, 5, requires_grad=True)
        rnn(x1)
        if detach:
            rnn.detach()
        rnn(torch.randn(2, 1, 2, 5, 5)).sum().backward()
        if detach:
            assert x1.grad is None
            assert rnn.timepool.conv_h2h.weight.grad.abs().sum() > 0  # still trains within the batch
        else:
            assert x1.grad is not None and x1.grad.abs().sum() > 0


def test_tree_helpers():
    net = nn.Sequential(ConvRNN(1, 2, cell="gru"), nn.Sequential(ConvRNN(2, 2, cell="lstm")))
    assert len(recurrent_modules(net)) == 2
    x = torch.randn(2, 2, 1, 4, 4, requires_grad=True)
    net(x).sum()
    reset_recurrent_states(net, torch.tensor([0.0, 1.0]))
    for rnn in recurrent_modules(net):
        assert (rnn.timepool.prev_h[0] == 0).all() and (rnn.timepool.prev_h[1] != 0).any()
    detach_recurrent_states(net)
    assert all(not rnn.timepool.prev_h.requires_grad for rnn in recurrent_modules(net))
    clear_recurrent_states(net)
    assert all(rnn.timepool.prev_h is None for rnn in recurrent_modules(net))


def test_bin_history_stacks_previous_bins_across_calls():
    history = BinHistory(2)
    x = torch.arange(6, dtype=torch.float32).view(3, 2, 1, 1, 1)  # bin t of stream b holds 2t + b
    out = history(x)[..., 0, 0]  # (T, B, 3): [x_t, x_{t-1}, x_{t-2}]
    assert out[:, 0].tolist() == [[0, 0, 0], [2, 0, 0], [4, 2, 0]]
    assert out[:, 1].tolist() == [[1, 0, 0], [3, 1, 0], [5, 3, 1]]
    # the next call continues the streams; stream 1 starts a new recording (empty past)
    history.reset(torch.tensor([1.0, 0.0]))
    out = history(x + 6)[..., 0, 0]
    assert out[:, 0].tolist() == [[6, 4, 2], [8, 6, 4], [10, 8, 6]]
    assert out[:, 1].tolist() == [[7, 0, 0], [9, 7, 0], [11, 9, 7]]
    # a batch cut differently gives the same stacks: one bin at a time
    history.clear()
    stepped = torch.cat([history(x[t:t + 1]) for t in range(3)])
    history.clear()
    assert torch.equal(stepped, history(x))


def test_bin_history_is_a_stateful_module_outside_the_graph():
    net = nn.Sequential(BinHistory(1), ConvRNN(2, 2))
    assert len(recurrent_modules(net)) == 2
    x = torch.rand(2, 3, 1, 4, 4, requires_grad=True)
    net(x)
    assert not net[0].past.requires_grad  # inputs of the past are data: no gradient flows into them
    reset_recurrent_states(net, torch.tensor([0.0, 1.0, 1.0]))
    assert (net[0].past[:, 0] == 0).all() and torch.equal(net[0].past[:, 1], x[-1:, 1].detach())
    reset_recurrent_states(net, torch.tensor([1.0, 1.0]))  # another batch size: the past is dropped
    assert net[0].past is None
    net(x)
    clear_recurrent_states(net)
    assert net[0].past is None
    with pytest.raises(ValueError, match="num_bins"):
        BinHistory(0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="cell"):
        ConvRNN(1, 2, cell="rnn")
    with pytest.raises(ValueError, match="input channels"):
        ConvRNN(3, 2)(torch.zeros(1, 1, 2, 4, 4))
