"""The flow warp loss (FWL) and the forward splatting it is built on: hand-computed values and known motions."""

from __future__ import annotations

import math

import pytest
import torch

from evframe.tasks.flow.metrics import FlowWarpLossMetric, flow_warp_loss
from evframe.tasks.flow.warping import forward_density, forward_splat


def test_forward_splat_splits_each_value_bilinearly_and_drops_what_leaves_the_image() -> None:
    values = torch.tensor([[[[0.0, 2.0, 0.0, 0.0, 4.0]]]])  # (1, 1, 1, 5)
    flow = torch.zeros(1, 2, 1, 5)
    flow[0, 0] = 0.25  # everything moves a quarter pixel right
    out = forward_splat(values, flow)
    # 2 at x=1 -> 1.5 at x=1, 0.5 at x=2; 4 at x=4 -> 3 at x=4, its 1 lands at x=5, outside
    assert out[0, 0, 0].tolist() == [0.0, 1.5, 0.5, 0.0, 3.0]
    assert torch.equal(forward_density(flow), forward_splat(torch.ones(1, 1, 1, 5), flow))


def test_forward_splat_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"values \(1, 1, 2, 5\) and flow \(1, 2, 1, 5\)"):
        forward_splat(torch.zeros(1, 1, 2, 5), torch.zeros(1, 2, 1, 5))


def _two_dots(moving: float = 4.0) -> torch.Tensor:
    """One bin of an event_cube with 2 micro bins (times 0.25 and 0.75 of the bin) and split polarity, 1 x 5 pixels:
    a dot moving ``moving`` px per bin from x=0 at the bin start fires at x = 0.25 * moving, then 0.75 * moving."""
    inputs = torch.zeros(1, 1, 4, 1, 5)  # channels: u0 neg, u0 pos, u1 neg, u1 pos
    inputs[0, 0, 1, 0, int(0.25 * moving)] = 1.0
    inputs[0, 0, 3, 0, int(0.75 * moving)] = 1.0
    return inputs


def _flow(vx: float, shape: tuple[int, ...] = (1, 1, 2, 1, 5)) -> torch.Tensor:
    flow = torch.zeros(shape)
    flow[:, :, 0] = vx
    return flow


def test_fwl_of_two_dots_by_hand() -> None:
    inputs = _two_dots()  # events at x=1 (t=0.25) and x=3 (t=0.75)
    # zero flow: IWE [0, 1, 0, 1, 0], mean 0.4, var 0.4 - 0.16 = 0.24
    assert flow_warp_loss(inputs, _flow(0.0)).item() == 1.0
    # the true 4 px per bin moves both back to x=0: IWE [2, 0, 0, 0, 0], var 0.8 - 0.16 = 0.64 -> 0.64 / 0.24
    assert flow_warp_loss(inputs, _flow(4.0)).item() == pytest.approx(8 / 3)
    # the opposite flow moves x=1 to 2 and x=3 to 6 (outside): IWE [0, 0, 1, 0, 0], var 0.16 -> 2 / 3
    assert flow_warp_loss(inputs, _flow(-4.0)).item() == pytest.approx(2 / 3)
    # half the flow: x=1 -> 0.5 and x=3 -> 1.5, split half and half: IWE [0.5, 1, 0.5, 0, 0], var 0.3 - 0.16
    assert flow_warp_loss(inputs, _flow(2.0)).item() == pytest.approx(0.14 / 0.24)


def test_fwl_counts_both_polarities_and_uses_the_flow_at_each_events_pixel() -> None:
    inputs = _two_dots()
    inputs[0, 0, 1, 0, 1], inputs[0, 0, 0, 0, 1] = 0.0, 1.0  # the first event is negative: still one event
    flow = _flow(4.0)
    assert flow_warp_loss(inputs, flow).item() == pytest.approx(8 / 3)
    flow[0, 0, 0, 0, 0] = -100.0  # the flow where no event is does not matter (forward warping)
    assert flow_warp_loss(inputs, flow).item() == pytest.approx(8 / 3)
    flow[0, 0, 0, 0, 3] = 0.0  # the event at x=3 stays: IWE [1, 0, 0, 1, 0] is as sharp as no motion
    assert flow_warp_loss(inputs, flow).item() == pytest.approx(1.0)


def test_fwl_with_one_micro_bin_warps_the_next_bin_back_with_this_bins_flow() -> None:
    inputs = torch.zeros(3, 1, 1, 1, 5)  # histo-like: one channel, one micro bin per bin
    inputs[0, 0, 0, 0, 1] = 1.0
    inputs[1, 0, 0, 0, 3] = 1.0
    inputs[2, 0, 0, 0, 4] = 1.0
    fwl = flow_warp_loss(inputs, _flow(2.0, (3, 1, 2, 1, 5)), channels_per_micro_bin=1)
    assert fwl.shape == (2, 1)  # pairs (0, 1) and (1, 2)
    # pair (0, 1): x=3 at time 1 moves back by 2 onto x=1: IWE [0, 2, 0, 0, 0] (var 0.64) against [0, 1, 0, 1, 0]
    # pair (1, 2): x=4 moves to 2 and x=3 stays: [0, 0, 1, 1, 0] against [0, 0, 0, 1, 1], the same variance
    assert fwl[:, 0].tolist() == pytest.approx([8 / 3, 1.0])


def test_fwl_of_a_translating_texture_prefers_the_true_flow(translation_case) -> None:
    inputs, true_flow = translation_case  # a texture moving (+2, -1) px per bin, 3 micro bins per bin
    zero = flow_warp_loss(inputs, torch.zeros_like(true_flow))
    assert torch.equal(zero, torch.ones_like(zero))  # zero flow: exactly the unwarped image
    true = flow_warp_loss(inputs, true_flow)
    assert bool((true > 1.05).all())
    assert bool((flow_warp_loss(inputs, -true_flow) < true).all())
    assert bool((flow_warp_loss(inputs, 2 * true_flow) < true).all())


def test_fwl_of_a_bin_without_events_is_nan_and_the_metric_leaves_it_out() -> None:
    inputs = torch.cat([_two_dots(), torch.zeros(1, 1, 4, 1, 5)])  # bin 1 holds nothing
    flow = _flow(4.0, (2, 1, 2, 1, 5))
    fwl = flow_warp_loss(inputs, flow)
    assert fwl[0, 0].item() == pytest.approx(8 / 3) and math.isnan(fwl[1, 0].item())
    metric = FlowWarpLossMetric(channels_per_micro_bin=2)
    metric.update(inputs, flow)
    metric.update(_two_dots(), _flow(0.0))  # a second batch: FWL 1
    out = metric.compute()
    assert int(out["n_bins"]) == 2
    assert out["fwl"].item() == pytest.approx((8 / 3 + 1.0) / 2)  # the mean over the bins with events
    metric.reset()
    assert math.isnan(metric.compute()["fwl"].item())


def test_fwl_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"flow \(1, 1, 2, 1, 4\)"):
        flow_warp_loss(torch.zeros(1, 1, 4, 1, 5), torch.zeros(1, 1, 2, 1, 4))

