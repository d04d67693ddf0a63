"""FlowNetwork: forward/loss plumbing, sharpening with a known flow, validation of arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evframe.models.temporal import ConvRNN
from evframe.tasks.flow.losses import split_micro_bins
from evframe.tasks.flow.metrics import flow_metrics
from evframe.tasks.flow.network import FlowNetwork


class FixedFlow(nn.Module):
    """A 'feature extractor' returning a given flow pyramid (to test the network's plumbing exactly)."""

    def __init__(self, flows: list[torch.Tensor]) -> None:
        super().__init__()
        self.flows = flows
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f + self.dummy for f in self.flows]


WEIGHTS = {"data": 1.0, "time_consistency": 0.5, "bw_deblur": 1.0, "smoothness": 0.1}


def test_forward_and_loss_with_named_extractor():
    net = FlowNetwork((3, 6, 30, 38), WEIGHTS, "midinet2", network_kwargs={"base": 4, "scales": 2})
    x = torch.rand(3, 2, 6, 30, 38) * (torch.rand(3, 2, 6, 30, 38) > 0.8)
    flows = net(x)
    assert [tuple(f.shape) for f in flows] == [(3, 2, 2, 8, 10), (3, 2, 2, 15, 19), (3, 2, 2, 30, 38)]
    losses = net.compute_loss(x, flows)
    assert set(losses) == set(WEIGHTS) | {"loss"}
    assert torch.isfinite(losses["loss"])
    assert losses["loss"].item() == pytest.approx(sum(losses[k].item() for k in WEIGHTS), rel=1e-5)
    losses["loss"].backward()
    net.detach()
    net.reset(torch.tensor([1.0, 0.0]))
    rnn = next(m for m in net.modules() if isinstance(m, ConvRNN))
    assert (rnn.timepool.prev_h[1] == 0).all() and (rnn.timepool.prev_h[0] != 0).any()
    assert set(net.compute_loss(x)) == set(WEIGHTS) | {"loss"}  # runs forward itself


def test_sharpen_with_zero_flow_is_the_plain_sum(translation_case):
    inputs, _ = translation_case
    net = FlowNetwork((4, 6, 40, 40), {"data": 1.0}, FixedFlow([torch.zeros(4, 1, 2, 40, 40)]))
    sharp = net.sharpen(inputs, micro_tbin=1)
    assert sharp.shape == (4, 1, 2, 40, 40)
    assert torch.allclose(sharp, split_micro_bins(inputs, 2).sum(2), atol=1e-6)


def test_sharpen_with_true_flow_is_sharper(translation_case):
    inputs, true_flow = translation_case
    half = true_flow[..., ::2, ::2] / 2
    net = FlowNetwork((4, 6, 40, 40), {"data": 1.0}, FixedFlow([half, true_flow]))
    blurry = split_micro_bins(inputs, 2).sum(2)
    for micro_tbin in range(3):
        sharp = net.sharpen(inputs, micro_tbin=micro_tbin)
        assert sharp.var(dim=(-2, -1)).mean() > 1.1 * blurry.var(dim=(-2, -1)).mean()
    coarse = net.sharpen(inputs, depth_level=0)
    assert coarse.shape == (4, 1, 2, 20, 20)
    with pytest.raises(ValueError, match="micro_tbin"):
        net.sharpen(inputs, micro_tbin=3)
    with pytest.raises(ValueError, match="depth_level"):
        net.sharpen(inputs, depth_level=5)


def test_argument_validation():
    with pytest.raises(ValueError, match="array_dim"):
        FlowNetwork((6, 40, 40), WEIGHTS)
    with pytest.raises(ValueError, match="unknown loss name"):
        FlowNetwork((2, 6, 16, 16), {"smooth": 1.0}, "midinet2", {"base": 4, "scales": 1})
    with pytest.raises(ValueError, match="available"):
        FlowNetwork((2, 6, 16, 16), WEIGHTS, "resnet")
    with pytest.raises(TypeError, match="nn.Module or a name"):
        FlowNetwork((2, 6, 16, 16), WEIGHTS, 3)
    net = FlowNetwork((2, 6, 16, 16), WEIGHTS, "eminet", {"base": 4, "scales": 1})
    with pytest.raises(ValueError, match=r"\(T, B, 6, H, W\)"):
        net(torch.zeros(2, 1, 2, 16, 16))


def test_training_learns_the_true_flow(translation_case):
    """End to end: a small midinet2 trained self-supervised on one moving texture predicts its motion
    (endpoint error at the event pixels well below the zero-flow baseline)."""
    torch.manual_seed(0)
    inputs, true_flow = translation_case
    net = FlowNetwork((4, 6, 40, 40), {"data": 1.0, "time_consistency": 0.5, "bw_deblur": 1.0, "smoothness": 0.1},
                      "midinet2", {"base": 8, "scales": 2})
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        net.clear()
        loss = net.compute_loss(inputs)["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.5
    net.eval()
    net.clear()
    with torch.no_grad():
        pred = net(inputs)[-1]
    events = inputs[:3, 0].abs().sum(1) > 0  # the last bin has no successor: its flow is unsupervised
    metrics = flow_metrics(pred[:3, 0], true_flow[:3, 0], events)
    assert metrics["aee_zero"] == pytest.approx(5**0.5, rel=1e-5)
    assert metrics["aee"] < 0.2 * metrics["aee_zero"]
