"""Loss terms and metrics with hand-computed values; the baseline integrator; the perceptual loss needs weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from evframe.tasks.e2v.losses import E2VLoss, PerceptualLoss, temporal_consistency
from evframe.tasks.e2v.metrics import EventIntegrator, ReconstructionMetrics


def _pattern(t: int, b: int, h: int, w: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(t, b, 1, h, w) * 0.8 + 0.1


def test_l1_and_ssim_terms_and_validity() -> None:
    target = _pattern(2, 2, 16, 16)
    pred = target + 0.1
    valid = torch.tensor([[True, False], [True, True]])
    loss = E2VLoss({"l1": 1.0, "ssim": 0.0})
    out = loss(pred, target, valid)
    assert float(out["l1"]) == pytest.approx(0.1, abs=1e-6) and float(out["loss"]) == pytest.approx(0.1, abs=1e-6)
    same = E2VLoss({"l1": 2.0, "ssim": 1.0})(target, target, valid)
    assert float(same["ssim"]) == pytest.approx(0.0, abs=1e-5) and float(same["loss"]) == pytest.approx(0.0, abs=1e-5)
    none = loss(pred.requires_grad_(), target, torch.zeros(2, 2, dtype=torch.bool))
    assert set(none) == {"loss"} and float(none["loss"].detach()) == 0 and none["loss"].requires_grad
    with pytest.raises(ValueError, match="unknown term"):
        E2VLoss({"l2": 1.0})


def test_temporal_consistency_is_zero_for_outputs_following_the_flow() -> None:
    # content moving right by 2 pixels per bin: the backward flow from bin t to bin t-1 is -2 in x
    base = _pattern(1, 1, 12, 20)[0, 0]
    frames = torch.stack([torch.roll(base, shifts=2 * t, dims=-1) for t in range(3)])[:, None]  # (T, B=1, 1, H, W)
    flow = torch.zeros(3, 1, 2, 12, 20)
    flow[:, :, 0] = -2.0
    mask = torch.ones(3, 1, 12, 20, dtype=torch.bool)
    mask[..., :2] = False  # those pixels came from outside the frame
    pairs = torch.ones(3, 1, dtype=torch.bool)
    assert float(temporal_consistency(frames, frames, flow, mask, pairs)) == pytest.approx(0.0, abs=1e-6)
    # an output brighter by 0.1 at every second bin breaks consistency by exactly 0.1 (targets agree: weight 1)
    flicker = frames.clone()
    flicker[1] += 0.1
    assert float(temporal_consistency(flicker, frames, flow, mask, pairs)) == pytest.approx(0.1, abs=1e-5)
    assert temporal_consistency(frames, frames, flow, mask, torch.zeros(3, 1, dtype=torch.bool)) is None
    out = E2VLoss({"temporal_consistency": 1.0})(flicker, frames, torch.ones(3, 1, dtype=torch.bool), flow, mask,
                                                  torch.ones(3, 1, dtype=torch.bool))
    assert float(out["loss"]) == pytest.approx(0.1, abs=1e-5)


def test_perceptual_loss_needs_user_weights_and_uses_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs loss.perceptual.weights_path"):
        E2VLoss({"l1": 1.0, "perceptual": 0.5})
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        PerceptualLoss(tmp_path / "missing.pt")
    from torchvision.models import vgg as tv_vgg

    torch.manual_seed(0)
    features = tv_vgg.make_layers(tv_vgg.cfgs["A"])[:3]  # vgg11's conv1 + relu + pool
    path = tmp_path / "vgg11_part.pt"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loss = E2VLoss({"perceptual": 1.0}, perceptual={"weights_path": str(path), "arch": "vgg11", "num_layers": 3})
    target = _pattern(1, 2, 16, 16)
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert float(loss(target, target, valid)["perceptual"]) == 0
    assert float(loss(target.flip(-1), target, valid)["perceptual"]) > 0
    torch.testing.assert_close(loss.perceptual.features[0].weight, features[0].weight)
    with pytest.raises(ValueError, match="lacks"):
        PerceptualLoss(path, arch="vgg11", num_layers=5)


def test_event_integrator_by_hand() -> None:
    # diff inputs: value * max_incr_per_pixel = signed count; 2 ON events in bin 0, then nothing
    inputs = torch.zeros(2, 2, 1, 1, 1)
    inputs[0, :, 0] = 2 / 5
    integrator = EventIntegrator("diff", {"max_incr_per_pixel": 5}, delta_t=100_000, contrast_threshold=0.2,
                                 tau_us=200_000)
    out = integrator(inputs)
    assert float(out[0, 0]) == pytest.approx(0.5 * math.exp(0.4))
    assert float(out[1, 0]) == pytest.approx(0.5 * math.exp(0.4 * math.exp(-0.5)))
    integrator.reset(torch.tensor([0.0, 1.0]))  # stream 0 restarts from gray, stream 1 keeps its state
    out = integrator(torch.zeros(1, 2, 1, 1, 1))
    assert float(out[0, 0]) == pytest.approx(0.5)
    assert float(out[0, 1]) == pytest.approx(0.5 * math.exp(0.4 * math.exp(-1.0)))
    with pytest.raises(ValueError, match="timesurface"):
        EventIntegrator("timesurface")


def test_reconstruction_metrics_by_hand() -> None:
    target = torch.full((2, 1, 1, 8, 8), 0.5)
    target[..., :4] = 0.2
    pred = target + 0.1
    baseline = target.clone()
    metric = ReconstructionMetrics()
    metric.update(pred, baseline, target, torch.tensor([[True], [False]]))
    values = metric.compute()
    assert float(values["mse"]) == pytest.approx(0.01, abs=1e-7) and float(values["mse_baseline"]) == 0
    assert float(values["ssim_baseline"]) == pytest.approx(1.0, abs=1e-6) and float(values["ssim"]) < 1
    assert float(values["num_frames"]) == 1
    metric.reset()
    metric.update(pred, baseline, target, torch.zeros(2, 1, dtype=torch.bool))  # nothing valid: no value
    assert math.isnan(float(metric.compute()["mse"]))
