"""Flow metrics against hand-computed endpoint errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evframe.tasks.flow.metrics import FlowErrorMetric, flow_metrics, gt_to_pixels_per_bin


def _case():
    """2x2 image, one batch element: errors 0, 1, 4, 5 px; |gt| = 1, 0, 5, 10."""
    gt = torch.tensor([[[1.0, 0.0], [3.0, 6.0]], [[0.0, 0.0], [4.0, 8.0]]])[None]
    pred = gt.clone()
    pred[0, 0, 0, 1] += 1.0  # error 1
    pred[0, :, 1, 0] += torch.tensor([0.0, 4.0])  # error 4
    pred[0, :, 1, 1] -= torch.tensor([3.0, 4.0])  # error 5
    return pred, gt


def test_hand_computed_values():
    pred, gt = _case()
    m = flow_metrics(pred, gt)
    assert m["aee"] == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert m["outlier_pct"] == pytest.approx(50.0)  # 4 and 5 exceed 3 px
    assert m["aee_zero"] == pytest.approx((1 + 0 + 5 + 10) / 4)
    assert m["outlier_pct_zero"] == pytest.approx(50.0)
    assert m["n_pixels"] == 4
    mask = torch.tensor([[[True, True], [True, False]]])
    m = flow_metrics(pred, gt, mask)
    assert m["aee"] == pytest.approx(5 / 3)
    assert m["outlier_pct"] == pytest.approx(100 / 3)
    assert m["n_pixels"] == 3


def test_relative_outliers_numpy_and_nan():
    pred, gt = _case()
    # KITTI style (also > 5% of |gt|): errors 4 (|gt| 5) and 5 (|gt| 10) stay outliers
    assert flow_metrics(pred, gt, outlier_rel=0.05)["outlier_pct"] == pytest.approx(50.0)
    # > 60% of |gt|: 4 > 3 still is, 5 < 6 is not
    assert flow_metrics(pred, gt, outlier_rel=0.6)["outlier_pct"] == pytest.approx(25.0)
    m = flow_metrics(pred.numpy(), gt.numpy(), np.ones((1, 2, 2), bool))
    assert m["aee"] == pytest.approx(2.5)
    gt_nan = gt.clone()
    gt_nan[0, 0, 1, 1] = float("nan")
    assert flow_metrics(pred, gt_nan)["n_pixels"] == 3
    empty = flow_metrics(pred, gt, torch.zeros(1, 2, 2, dtype=torch.bool))
    assert empty["n_pixels"] == 0 and math.isnan(empty["aee"])


def test_accumulator_is_pixel_weighted():
    pred, gt = _case()
    acc = FlowErrorMetric()
    acc.update(pred, gt)
    acc.update(torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1))  # one perfect pixel
    m = acc.compute()
    assert float(m["aee"]) == pytest.approx(10 / 5)
    assert float(m["outlier_pct"]) == pytest.approx(40.0)
    assert int(m["n_pixels"]) == 5
    acc.reset()
    assert int(acc.compute()["n_pixels"]) == 0


def test_units_and_errors():
    assert gt_to_pixels_per_bin(torch.tensor(1000.0), 50_000, downsample=1).item() == pytest.approx(25.0)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        flow_metrics(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="mask"):
        flow_metrics(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(4, 4, dtype=torch.bool))
