"""Flow losses: every task term prefers the true flow of a synthetic moving texture over zero, reversed and
doubled flows; regularisers have their analytic values; gradients are finite."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from evframe.tasks.flow.losses import (
    LOSS_NAMES,
    FlowLoss,
    bins_warped_to_start,
    bw_deblur_loss,
    charbonnier,
    data_loss,
    gaussian_blur,
    l1_loss,
    smoothness2_loss,
    smoothness_loss,
    split_micro_bins,
    time_consistency_loss,
    undisoccluded_mask,
    unoccluded_mask,
)
from evframe.tasks.flow.warping import forward_density
from tests.flow.conftest import SIZE, constant_flow, make_texture, render, render_images, translation

TASK_TERMS = {"data": data_loss, "time_consistency": time_consistency_loss, "bw_deblur": bw_deblur_loss}


@pytest.fixture(params=["translation", "rotation"])
def case(request, translation_case, rotation_case):
    return translation_case if request.param == "translation" else rotation_case


def assert_true_flow_scores_lowest(score, true_flow: torch.Tensor, term: str) -> float:
    """``score(flow) -> float`` must be lowest for ``true_flow`` among zero, opposite, doubled and halved flows;
    returns the true flow's score."""
    best = score(true_flow)
    for name, wrong in {
        "zero": torch.zeros_like(true_flow),
        "opposite": -true_flow,
        "2x too large": 2 * true_flow,
        "half": 0.5 * true_flow,
    }.items():
        value = score(wrong)
        assert best < value, f"{term}: loss(true)={best:.4f} is not below loss({name})={value:.4f}"
    return best


@pytest.mark.parametrize("term", sorted(TASK_TERMS))
def test_task_term_prefers_true_flow(term, case):
    inputs, true_flow = case
    assert_true_flow_scores_lowest(lambda flow: TASK_TERMS[term](inputs, flow).item(), true_flow, term)


@pytest.mark.parametrize("term", sorted(TASK_TERMS))
def test_task_terms_penalise_sending_everything_away(term, translation_case):
    """A huge flow samples only empty space: it must score worse than zero flow (no degenerate minimum)."""
    inputs, true_flow = translation_case
    fn = TASK_TERMS[term]
    huge = torch.full_like(true_flow, 500.0)
    assert fn(inputs, huge).item() > fn(inputs, torch.zeros_like(true_flow)).item()


def test_photometric_terms_are_normalised(translation_case):
    """Data terms are ratios in [0, 1]: near 0 for the true flow, 1 when nothing overlaps."""
    inputs, true_flow = translation_case
    assert data_loss(inputs, true_flow).item() < 0.05
    # (slightly below 1: the Charbonnier penalty is below |r| for the faint blurred tails)
    assert 0.95 < data_loss(inputs, torch.full_like(true_flow, 500.0)).item() <= 1.0
    # independent of event density / contrast: scaling the tensor barely changes the value
    for fn in (data_loss, time_consistency_loss):
        a = fn(inputs, torch.zeros_like(true_flow)).item()
        b = fn(5 * inputs, torch.zeros_like(true_flow)).item()
        assert b == pytest.approx(a, rel=0.02)


def test_bw_deblur_range(translation_case):
    inputs, true_flow = translation_case
    value = bw_deblur_loss(inputs, true_flow).item()
    assert -1.0 <= value < -0.95  # near-perfect alignment of the 3 micro bins
    assert bw_deblur_loss(inputs, torch.full_like(true_flow, 500.0)).item() == pytest.approx(0.0, abs=1e-3)


def test_bw_deblur_single_micro_bin_uses_consecutive_bins(translation_case):
    """histo-like input (one micro bin of 2 channels): consecutive bins play the micro bins at times 0 and 1."""
    inputs, true_flow = translation_case
    histo = split_micro_bins(inputs, 2).sum(dim=2)  # (T, 1, 2, H, W): all micro bins of a bin summed
    best = bw_deblur_loss(histo, true_flow, channels_per_micro_bin=2).item()
    assert best < bw_deblur_loss(histo, torch.zeros_like(true_flow), channels_per_micro_bin=2).item()
    assert best < bw_deblur_loss(histo, -true_flow, channels_per_micro_bin=2).item()


def test_micro_bin_layout_error_is_clear(translation_case):
    inputs, true_flow = translation_case
    with pytest.raises(ValueError, match="channels_per_micro_bin=4"):
        bw_deblur_loss(inputs, true_flow, channels_per_micro_bin=4)


def test_time_consistency_needs_three_bins(translation_case):
    inputs, true_flow = translation_case
    flow = true_flow[:2].clone().requires_grad_(True)
    value = time_consistency_loss(inputs[:2], flow)
    assert value.item() == 0.0
    value.backward()  # still connected to the graph
    assert data_loss(inputs[:1], true_flow[:1]).item() == 0.0


def test_multiscale_loss_prefers_true_pyramid(translation_case):
    """FlowLoss downsamples the inputs to each level; the true flow at level s is the flow / 2**s."""
    inputs, true_flow = translation_case
    loss = FlowLoss({"data": 1.0, "time_consistency": 1.0, "bw_deblur": 1.0})

    def pyramid(flow):
        return [torch.nn.functional.avg_pool3d(flow, (1, s, s)) / s if s > 1 else flow for s in (4, 2, 1)]

    true_pyr = pyramid(true_flow)
    assert [tuple(f.shape[-2:]) for f in true_pyr] == [(10, 10), (20, 20), (40, 40)]
    best = loss(inputs, true_pyr)
    assert set(best) == {"data", "time_consistency", "bw_deblur", "loss"}
    assert best["loss"].item() == pytest.approx(sum(best[k].item() for k in ("data", "time_consistency", "bw_deblur")))
    for wrong in (torch.zeros_like(true_flow), -true_flow, 2 * true_flow):
        assert best["loss"].item() < loss(inputs, pyramid(wrong))["loss"].item()


def test_flow_loss_weights_and_levels(translation_case):
    inputs, true_flow = translation_case
    single = FlowLoss({"data": 1.0})(inputs, [true_flow])["data"]
    weighted = FlowLoss({"data": 3.0, "l1": 0.0})(inputs, true_flow)
    assert set(weighted) == {"data", "loss"}  # zero-weight terms are skipped
    assert weighted["data"].item() == pytest.approx(3 * single.item(), rel=1e-6)
    two_levels = FlowLoss({"l1": 1.0})(inputs, [true_flow[..., ::2, ::2] / 2, true_flow])
    assert two_levels["l1"].item() == pytest.approx(0.75 + 1.5)


def test_coarse_level_decay_weights_levels_from_the_finest(translation_case):
    inputs, true_flow = translation_case
    # l1 of the pyramid levels: 1.5 at full resolution, 0.75 at half, 0.375 at quarter (pixels of each level)
    pyramid = [true_flow[..., ::4, ::4] / 4, true_flow[..., ::2, ::2] / 2, true_flow]
    decayed = FlowLoss({"l1": 1.0}, coarse_level_decay=0.5)(inputs, pyramid)["l1"].item()
    assert decayed == pytest.approx(0.25 * 0.375 + 0.5 * 0.75 + 1.5)
    explicit = FlowLoss({"l1": 1.0}, level_weights=[0.25, 0.5, 1.0])(inputs, pyramid)["l1"].item()
    assert explicit == pytest.approx(decayed)
    assert FlowLoss({"l1": 1.0}, coarse_level_decay=0.0)(inputs, pyramid)["l1"].item() == pytest.approx(1.5)
    assert FlowLoss({"l1": 1.0})(inputs, pyramid)["l1"].item() == pytest.approx(0.375 + 0.75 + 1.5)
    with pytest.raises(ValueError, match="coarse_level_decay"):
        FlowLoss({"l1": 1.0}, coarse_level_decay=-1.0)


def test_unknown_loss_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss name") as info:
        FlowLoss({"dataa": 1.0})
    for name in LOSS_NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="must be a number"):
        FlowLoss({"data": "x"})


def test_smoothness_values():
    const = torch.zeros(2, 1, 2, 8, 9)
    const[:, :, 0] = 3.0
    const[:, :, 1] = -1.5
    assert smoothness_loss(const).item() == 0.0
    assert smoothness2_loss(const).item() == 0.0
    assert smoothness_loss(torch.randn(2, 1, 2, 8, 9)).item() > 0.1
    # a step of 2 px between two columns: charbonnier(2) on 1 of 8 x-differences per row
    step = torch.zeros(1, 1, 2, 4, 9)
    step[..., :, 5:] = 2.0
    expected = charbonnier(torch.tensor(2.0)).item() / 8
    assert smoothness_loss(step).item() == pytest.approx(expected, rel=1e-6)


def test_smoothness2_vanishes_on_affine_fields():
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(10.0), indexing="ij")
    affine = torch.stack([0.3 * xs - 0.2 * ys + 1.0, -0.1 * xs + 0.05 * ys])[None, None]
    assert smoothness2_loss(affine).item() < 1e-6
    assert smoothness_loss(affine).item() > 0.05  # first order does penalise it
    quadratic = torch.stack([0.1 * xs**2, 0.1 * ys * xs])[None, None]
    assert smoothness2_loss(quadratic).item() > 0.05


def test_smoothness_mask_restricts_pixels():
    flow = torch.zeros(1, 1, 2, 6, 6)
    flow[..., :, 4:] = 5.0  # discontinuity between columns 3 and 4
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[..., :, :2] = True  # events only far from the discontinuity
    assert smoothness_loss(flow).item() > 0
    assert smoothness_loss(flow, mask).item() == 0.0
    assert smoothness2_loss(flow, mask).item() == 0.0


def test_l1_values():
    flow = torch.zeros(2, 3, 2, 4, 5)
    flow[:, :, 0] = 3.0
    flow[:, :, 1] = -4.0
    assert l1_loss(flow).item() == pytest.approx(3.5)
    mask = torch.zeros(2, 3, 4, 5)
    mask[:, :, 0, 0] = 1
    flow[:, :, :, 0, 0] = 10.0
    assert l1_loss(flow, mask).item() == pytest.approx(10.0)


def test_masked_terms_in_flow_loss(translation_case):
    inputs, _ = translation_case
    flow = torch.zeros(4, 1, 2, 40, 40)
    flow[..., 0, 0] = 100.0  # a corner pixel: no events there
    assert (inputs[:, :, :, 0, 0] == 0).all()
    masked = FlowLoss({"l1": 1.0}, masked_terms=["l1"])(inputs, flow)["l1"]
    unmasked = FlowLoss({"l1": 1.0})(inputs, flow)["l1"]
    assert masked.item() == 0.0 and unmasked.item() > 0
    with pytest.raises(ValueError, match="not regularisers"):
        FlowLoss({"l1": 1.0}, masked_terms=["data"])


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("start", ["zero", "true"])
def test_gradients_are_finite(name, start, translation_case):
    inputs, true_flow = translation_case
    flow = (torch.zeros_like(true_flow) if start == "zero" else true_flow.clone()).requires_grad_(True)
    value = FlowLoss({name: 1.0})(inputs, [flow])["loss"]
    value.backward()
    assert torch.isfinite(flow.grad).all()
    if name in TASK_TERMS and start == "zero":
        assert flow.grad.abs().sum() > 0


def test_optimising_a_constant_flow_recovers_the_motion(translation_case):
    """End to end: gradient descent on a free (vx, vy) with the task terms lands on (+2, -1)."""
    inputs, true_flow = translation_case
    loss = FlowLoss({"data": 1.0, "bw_deblur": 1.0})
    v = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.1)
    for _ in range(80):
        flow = v.view(1, 1, 2, 1, 1).expand_as(true_flow)
        value = loss(inputs, [flow])["loss"]
        opt.zero_grad()
        value.backward()
        opt.step()
    assert v.detach().tolist() == pytest.approx([2.0, -1.0], abs=0.2)


def test_charbonnier_and_blur():
    assert charbonnier(torch.tensor(0.0)).item() == 0.0
    assert charbonnier(torch.tensor(10.0), eps=1e-3).item() == pytest.approx(10.0 - 1e-3, abs=1e-5)
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 4] = 1.0
    blurred = gaussian_blur(x, 1.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-6)  # mass kept away from the border
    assert torch.allclose(blurred, blurred.transpose(-1, -2))
    assert blurred[..., 4, 4] > blurred[..., 4, 5] > blurred[..., 4, 6] > 0
    assert torch.equal(gaussian_blur(x, 0.0), x)


@pytest.mark.parametrize("window", [2, 3])
def test_bw_deblur_over_a_window_of_bins_prefers_the_true_flow(window: int) -> None:
    """Micro bins of several bins warped with the first bin's flow: the true flow is sharpest, and the contrast
    gap between true and zero flow of a slow motion (one pixel per bin) grows with the window."""
    v = (1.0, -0.5)
    inputs, true_flow = render(make_texture(2), translation(v)), constant_flow(v)
    best = bw_deblur_loss(inputs, true_flow, window=window).item()
    for wrong in (torch.zeros_like(true_flow), -true_flow, 2 * true_flow, 0.5 * true_flow):
        assert best < bw_deblur_loss(inputs, wrong, window=window).item()
    zero = torch.zeros_like(true_flow)
    gap = bw_deblur_loss(inputs, zero, window=window).item() - best
    gap_single_bin = bw_deblur_loss(inputs, zero).item() - bw_deblur_loss(inputs, true_flow).item()
    assert gap > gap_single_bin
    assert bw_deblur_loss(inputs[:1], true_flow[:1], window=window).item() == 0.0  # fewer bins than the window
    with pytest.raises(ValueError, match="window"):
        bw_deblur_loss(inputs, true_flow, window=0)


def test_bins_warped_to_start_moves_each_micro_bin_back_by_its_time() -> None:
    """Two micro bins (centres 0.25 and 0.75 of the bin) hold a dot at x=2 and x=4: a flow of 4 px per bin puts both
    at x=1, where the dot was at the bin start; zero flow leaves them apart."""
    inputs = torch.zeros(1, 1, 2, 1, 8)  # (T, B, C = 2 micro bins x 1 channel, H, W)
    inputs[0, 0, 0, 0, 2] = 1.0
    inputs[0, 0, 1, 0, 4] = 1.0
    flow = torch.zeros(1, 1, 2, 1, 8)
    flow[:, :, 0] = 4.0
    warped = bins_warped_to_start(inputs, flow, channels_per_micro_bin=1)
    assert warped.shape == (1, 1, 1, 1, 8)
    assert warped[0, 0, 0, 0].tolist() == pytest.approx([0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], abs=1e-5)
    still = bins_warped_to_start(inputs, torch.zeros_like(flow), channels_per_micro_bin=1)
    assert still[0, 0, 0, 0].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0], abs=1e-5)


@pytest.mark.parametrize("term", ["data", "time_consistency"])
def test_motion_compensated_terms_prefer_true_flow(term, case):
    inputs, true_flow = case
    loss = FlowLoss({term: 1.0}, motion_compensated=True, blur_sigma=1.0)
    best = assert_true_flow_scores_lowest(lambda flow: loss(inputs, flow)[term].item(), true_flow, term)
    plain = FlowLoss({term: 1.0}, blur_sigma=1.0)(inputs, true_flow)[term].item()
    assert best != pytest.approx(plain)  # the option changes what is compared


def test_unoccluded_mask_leaves_out_pixels_that_land_where_another_surface_lands() -> None:
    """Pixels 2 and 3 move by +2 onto pixels 4 and 5, which stay: density 2 there, so 2, 3, 4 and 5 are left out;
    the uncovered pixels 2 and 3 of the next bin receive nothing, which leaves the others alone."""
    flow = torch.zeros(1, 1, 2, 1, 8)
    flow[0, 0, 0, 0, 2:4] = 2.0
    assert forward_density(flow[0])[0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 2.0, 2.0, 1.0, 1.0]
    mask = unoccluded_mask(flow)
    assert mask.shape == (1, 1, 1, 1, 8)
    assert mask[0, 0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert unoccluded_mask(torch.full((1, 1, 2, 1, 8), 0.5))[0, 0, 0, 0, :7].tolist() == [1.0] * 7
    # pixel 3 alone moving onto pixel 4 gives a density of 2 there: left out at 1.5, kept at 2.5
    single = torch.zeros(1, 1, 2, 1, 8)
    single[0, 0, 0, 0, 3] = 1.0
    assert unoccluded_mask(single, 1.5)[0, 0, 0, 0].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert unoccluded_mask(single, 2.5)[0, 0, 0, 0].tolist() == [1.0] * 8
    with pytest.raises(ValueError, match="occlusion_max_density"):
        FlowLoss({"data": 1.0}, occlusion_masked=True, occlusion_max_density=1.0)


@pytest.mark.parametrize("term", ["data", "time_consistency"])
def test_occlusion_masked_terms_prefer_true_flow(term, case):
    inputs, true_flow = case
    loss = FlowLoss({term: 1.0}, occlusion_masked=True, blur_sigma=1.0)
    assert_true_flow_scores_lowest(lambda flow: loss(inputs, flow)[term].item(), true_flow, term)


def accelerating(v0: float, accel: float) -> Callable:
    """Content moving along x with velocity ``v0 + accel * s`` px per bin at time ``s`` (bins)."""

    def motion(xs: torch.Tensor, ys: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        return xs - (v0 * s + 0.5 * accel * s * s), ys

    return motion


def per_bin_flow(vx: list[float]) -> torch.Tensor:
    """``(T, 1, 2, H, W)`` flow whose x component is ``vx[t]`` in bin ``t``."""
    flow = torch.zeros(len(vx), 1, 2, 40, 40)
    flow[:, :, 0] = torch.tensor(vx).view(-1, 1, 1, 1)
    return flow


@pytest.fixture(scope="module")
def accelerating_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs of 4 bins, velocity at each bin start (1, 2, 3, 4 px per bin), velocity one bin later (2 .. 5)).

    The velocity at the bin start is what the flow labels describe; the centre-to-centre displacement of bins
    ``t - 1`` and ``t`` equals it exactly (central difference of a quadratic), that of bins ``t`` and ``t + 1``
    is one bin later's."""
    inputs = render(make_texture(3), accelerating(1.0, 1.0))
    return inputs, per_bin_flow([1.0, 2.0, 3.0, 4.0]), per_bin_flow([2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("term", sorted(TASK_TERMS))
def test_centred_pairing_measures_the_motion_at_the_bin_start(term, accelerating_case) -> None:
    """Under acceleration the centred terms prefer the velocity at each bin start, the Metavision pairing the
    velocity one bin later (data) or two bins later (time consistency). (Its bw_deblur, whose micro bins lie in
    the bin, measures about a third of a bin later, too close to either flow tried here to tell them apart.)"""
    inputs, at_start, later = accelerating_case
    loss = {pairing: FlowLoss({term: 1.0}, blur_sigma=1.0, pairing=pairing) for pairing in ("next", "centred")}

    def score(pairing: str, flow: torch.Tensor) -> float:
        return loss[pairing](inputs, flow)[term].item()

    assert score("centred", at_start) < score("centred", later)
    assert score("centred", at_start) < score("centred", 2 * at_start - later)  # one bin earlier
    assert score("centred", at_start) < score("centred", torch.zeros_like(at_start))
    # velocity + acceleration * offset (1 px per bin per bin): the time the Metavision pairing measures
    if term != "bw_deblur":
        offset = {"data": 1.0, "time_consistency": 2.0}[term]
        assert score("next", at_start + offset * (later - at_start)) < score("next", at_start)


def test_centred_terms_use_the_bins_around_each_flow(translation_case) -> None:
    """Which flows each centred term reads: data and bw_deblur never bin 0's flow (no previous bin in the batch),
    time consistency every bin's; a constant true flow still scores lowest."""
    inputs, true_flow = translation_case
    garbage = true_flow.clone()
    garbage[0] = 7.0
    for term in ("data", "bw_deblur"):
        loss = FlowLoss({term: 1.0}, blur_sigma=1.0, pairing="centred")
        assert loss(inputs, garbage)[term].item() == pytest.approx(loss(inputs, true_flow)[term].item())
    tc = FlowLoss({"time_consistency": 1.0}, blur_sigma=1.0, pairing="centred")
    assert tc(inputs, garbage)["time_consistency"].item() > tc(inputs, true_flow)["time_consistency"].item()
    for term in TASK_TERMS:
        loss = FlowLoss({term: 1.0}, blur_sigma=1.0, pairing="centred")
        assert_true_flow_scores_lowest(lambda flow, loss=loss, term=term: loss(inputs, flow)[term].item(),
                                       true_flow, term)
    # the centred pair of bin t is the Metavision pair of bin t - 1: F_t takes the place of F_{t-1}
    shifted = data_loss(inputs, garbage.roll(-1, dims=0)).item()
    assert data_loss(inputs, garbage, pairing="centred").item() == pytest.approx(shifted)


def test_centred_deblur_window_warps_the_previous_bin_back_to_the_bin_start() -> None:
    """A dot at x=1 in the last micro bin of bin 0 (time -1/6 of bin 1) and at x=3 in the first micro bin of bin 1
    (time +1/6): a flow of 6 px per bin brings both to x=2, the dot's position at the start of bin 1."""
    inputs = torch.zeros(2, 1, 3, 1, 8)  # (T, B, 3 micro bins x 1 channel, H, W)
    inputs[0, 0, 2, 0, 1] = 1.0
    inputs[1, 0, 0, 0, 3] = 1.0
    flow = torch.zeros(2, 1, 2, 1, 8)
    flow[1, :, 0] = 6.0
    sharp = bw_deblur_loss(inputs, flow, None, 1, 0.0, window=2, window_start=-1).item()
    # both dots on one pixel: var(IWE) / (K * sum var(w_k)) = 2 / K with K = 6 micro bins, of which 2 hold events
    assert sharp == pytest.approx(-2 / 6, abs=1e-5)
    apart = bw_deblur_loss(inputs, torch.zeros_like(flow), None, 1, 0.0, window=2, window_start=-1).item()
    assert apart == pytest.approx(-(2 / 8 - (2 / 8) ** 2) / (6 * 2 * (1 / 8 - 1 / 64)), abs=1e-5)
    with pytest.raises(ValueError, match="window_start"):
        bw_deblur_loss(inputs, flow, window=2, window_start=-2)
    with pytest.raises(ValueError, match="pairing"):
        FlowLoss({"data": 1.0}, pairing="previous")


def test_centred_photometric_terms_weigh_each_pair_by_the_mask_of_its_reference_bin(translation_case) -> None:
    """A caller's mask that leaves out every pixel of bin 0 takes out the centred data pair of F_1 (bins 0 and 1,
    reference bin 0): a wrong F_1 then costs nothing, while without the mask it does."""
    inputs, true_flow = translation_case
    wrong = true_flow.clone()
    wrong[1] = -3.0
    mask = torch.ones(inputs.shape[0], 1, 1, *inputs.shape[-2:])
    mask[0] = 0.0
    loss = FlowLoss({"data": 1.0}, blur_sigma=1.0, pairing="centred", occlusion_masked=True)
    assert loss(inputs, wrong, mask)["data"].item() == pytest.approx(loss(inputs, true_flow, mask)["data"].item())
    assert loss(inputs, wrong)["data"].item() > loss(inputs, true_flow)["data"].item() + 0.01


def test_undisoccluded_mask_leaves_out_pixels_that_come_from_where_another_surface_comes_from() -> None:
    """Pixels 2 and 3 move by +2 (an object), the rest stays: a bin earlier the object was on pixels 0 and 1, over
    the background that is there now. Sources 0 and 1 are shared (density 2 of the reversed flow): pixels 0-3 are
    left out, the others kept."""
    flow = torch.zeros(1, 1, 2, 1, 8)
    flow[0, 0, 0, 0, 2:4] = 2.0
    assert undisoccluded_mask(flow)[0, 0, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert unoccluded_mask(flow)[0, 0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.fixture(scope="module")
def object_over_background() -> tuple[torch.Tensor, Callable[..., torch.Tensor]]:
    """A textured disk (radius 9 px) moving +4 px per bin over a background texture moving -1 px per bin.

    Returns the inputs and ``flow(halo)``: the true flow at each bin start (the disk's motion on the disk, the
    background's elsewhere), or with the disk's motion also on the ``halo`` pixels behind it, the background its
    trailing edge uncovered during the previous bin."""
    v_object, v_background, radius, x0, y0 = 4.0, -1.0, 9.0, 8.0, 20.0
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64),
                            indexing="ij")
    background, texture = make_texture(4, n_blobs=40), make_texture(5)

    def disk(s: float) -> torch.Tensor:
        return (xs - x0 - v_object * s) ** 2 + (ys - y0) ** 2 <= radius**2

    inputs = render_images(lambda s: torch.where(disk(s), texture(xs - v_object * s, ys),
                                                 background(xs - v_background * s, ys)))

    def flow(halo: float = 0.0) -> torch.Tensor:
        out = torch.zeros(4, 1, 2, SIZE, SIZE)
        out[:, :, 0] = v_background
        for t in range(4):
            covered = disk(t)
            for back in torch.linspace(0, halo, 9).tolist():
                covered = covered | disk(t - back / v_object)
            out[t, 0, 0][covered] = v_object
        return out

    return inputs, flow


@pytest.mark.parametrize("term", ["data", "time_consistency"])
def test_disocclusion_mask_takes_away_the_reward_for_a_halo_behind_a_moving_object(term,
                                                                                   object_over_background) -> None:
    """With the occlusion mask alone the centred terms score the true flow worse than the object's motion spread 2 or
    4 px into the background behind it (the events of its trailing edge move with it); leaving out the uncovered
    background as well, the true flow scores best."""
    inputs, flow = object_over_background

    def scores(disocclusion_masked: bool) -> list[float]:
        loss = FlowLoss({term: 1.0}, blur_sigma=0.5, pairing="centred", occlusion_masked=True,
                        occlusion_max_density=1.2, disocclusion_masked=disocclusion_masked)
        return [loss(inputs, flow(halo))[term].item() for halo in (0.0, 2.0, 4.0)]

    truth, halo2, halo4 = scores(False)
    assert halo4 < halo2 < truth
    truth, halo2, halo4 = scores(True)
    assert truth < halo2 < halo4
    assert truth < FlowLoss({term: 1.0}, blur_sigma=0.5, pairing="centred", disocclusion_masked=True)(
        inputs, torch.zeros_like(flow()))[term].item()


def test_bw_deblur_mask_keeps_the_variances_to_its_pixels() -> None:
    """The two dots of the centred deblur test, measured on pixels 0-3 only (n = 4): apart (zero flow) the IWE has
    1 at pixels 1 and 3, var 2/4 - (2/4)^2 = 1/4, each of the two non-empty warped micro bins 1/4 - 1/16 = 3/16,
    so the loss is -(1/4) / (6 * 2 * 3/16) = -1/9 (-1/7 on all 8 pixels); stacked (6 px per bin) it is -1/3 either
    way. Pixels 4-7 hold no event: 0."""
    inputs = torch.zeros(2, 1, 3, 1, 8)
    inputs[0, 0, 2, 0, 1] = 1.0
    inputs[1, 0, 0, 0, 3] = 1.0
    flow = torch.zeros(2, 1, 2, 1, 8)
    flow[1, :, 0] = 6.0
    left = torch.zeros(2, 1, 1, 1, 8)
    left[..., :4] = 1.0

    def loss(f: torch.Tensor, mask: torch.Tensor | None) -> float:
        return bw_deblur_loss(inputs, f, mask, 1, 0.0, window=2, window_start=-1).item()

    assert loss(torch.zeros_like(flow), left) == pytest.approx(-1 / 9, abs=1e-5)
    assert loss(torch.zeros_like(flow), None) == pytest.approx(-1 / 7, abs=1e-5)
    assert loss(torch.zeros_like(flow), torch.ones_like(left)) == pytest.approx(-1 / 7, abs=1e-5)
    assert loss(flow, left) == pytest.approx(-1 / 3, abs=1e-5)
    assert loss(flow, 1.0 - left) == pytest.approx(0.0, abs=1e-6)
