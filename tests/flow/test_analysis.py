"""Flow error breakdown: motion boundaries of a known step flow, sums per subset with hand-computed errors."""

from __future__ import annotations

import math

import pytest
import torch

from evframe.tasks.flow.analysis import ErrorBreakdown, motion_boundaries, spread_object_motion


def _step_flow(h: int = 6, w: int = 20, edge: int = 10, right: tuple[float, float] = (2.0, 0.0)) -> torch.Tensor:
    """(1, 2, H, W): zero flow left of column ``edge``, ``right`` from it on."""
    gt = torch.zeros(1, 2, h, w)
    gt[0, 0, :, edge:] = right[0]
    gt[0, 1, :, edge:] = right[1]
    return gt


def test_motion_boundaries_of_a_step_and_of_a_zoom():
    boundary = motion_boundaries(_step_flow(), radius=3, jump=0.75)
    # a column is on the boundary when its 7-wide window holds both sides: columns 7 .. 12
    assert boundary[0].any(dim=0).nonzero().flatten().tolist() == [7, 8, 9, 10, 11, 12]
    assert boundary[0].all(dim=0).nonzero().flatten().tolist() == [7, 8, 9, 10, 11, 12]
    # a smooth zoom changes by 0.06 px over 7 pixels: no boundary anywhere
    xs = torch.arange(40.0)
    zoom = torch.stack([0.01 * (xs - 20).expand(10, 40), torch.zeros(10, 40)])[None]
    assert not motion_boundaries(zoom).any()
    # a jump below the threshold is not a boundary
    assert not motion_boundaries(_step_flow(right=(0.5, 0.0)), jump=0.75).any()
    with pytest.raises(ValueError, match="N, 2, H, W"):
        motion_boundaries(torch.zeros(2, 6, 20))


def test_error_breakdown_sums():
    gt = _step_flow(right=(0.0, 2.0))
    pred = gt + torch.tensor([0.3, 0.4]).view(1, 2, 1, 1)  # endpoint error 0.5 everywhere
    mask = torch.ones(1, 6, 20, dtype=torch.bool)
    mask[0, 0, :] = False  # the first row is not scored
    gt_nan = gt.clone()
    gt_nan[0, :, 1, 0] = float("nan")  # nor is a pixel without ground truth
    breakdown = ErrorBreakdown(speed_edges=(0.0, 1.0, 4.0))
    breakdown.update(pred, gt_nan, mask, group="rec_a")
    rows = {(r["group"], r["subset"]): r for r in breakdown.rows()}
    n_all = 5 * 20 - 1
    everything = rows[("all", "all")]
    assert everything["n"] == n_all and everything["aee"] == pytest.approx(0.5)
    # zero flow errs by |gt| = 2 on the 10 right columns (5 scored rows), 0 on the left
    assert everything["aee_zero"] == pytest.approx(2.0 * 50 / n_all)
    assert everything["ratio"] == pytest.approx(0.5 * n_all / 100.0)
    assert rows[("rec_a", "all")]["n"] == n_all
    assert rows[("all", "boundary")]["n"] == 6 * 5 and rows[("all", "interior")]["n"] == n_all - 30
    assert rows[("all", "boundary")]["share"] + rows[("all", "interior")]["share"] == pytest.approx(1.0)
    slow, fast = rows[("all", "speed [0, 1)")], rows[("all", "speed [1, 4)")]
    assert (slow["n"], fast["n"]) == (49, 50)
    assert slow["aee_zero"] == 0.0 and math.isnan(slow["ratio"]) and fast["ratio"] == pytest.approx(0.25)
    assert "rec_a" in breakdown.format()
    with pytest.raises(ValueError, match="increase"):
        ErrorBreakdown(speed_edges=(1.0, 0.5))
    with pytest.raises(ValueError, match="mask"):
        breakdown.update(pred, gt, torch.ones(6, 20, dtype=torch.bool))


def test_error_breakdown_distance_bands_of_a_step():
    """Step at column 10 of 20: a window of radius r holds the jump for columns 10-r .. 9+r."""
    gt = _step_flow(right=(0.0, 2.0))
    pred = gt + torch.tensor([0.3, 0.4]).view(1, 2, 1, 1)  # endpoint error 0.5 everywhere
    mask = torch.ones(1, 6, 20, dtype=torch.bool)
    mask[0, 0, :] = False  # 5 scored rows
    breakdown = ErrorBreakdown(distance_radii=(1, 2, 4))
    breakdown.update(pred, gt, mask)
    rows = {r["subset"]: r for r in breakdown.rows() if r["group"] == "all"}
    # columns 9, 10 | 8, 11 | 6, 7, 12, 13 | the other 12
    assert [rows[k]["n"] for k in ("distance (0, 1] px", "distance (1, 2] px", "distance (2, 4] px",
                                   "distance > 4 px")] == [10, 10, 20, 60]
    # within 1 px: zero flow errs by 2 on column 10 only -> ratio 0.5 * 10 / (2 * 5)
    assert rows["distance (0, 1] px"]["ratio"] == pytest.approx(0.5)
    assert sum(rows[k]["share"] for k in rows if k.startswith("distance")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="distance_radii"):
        ErrorBreakdown(distance_radii=(2, 1))


def test_spread_object_motion_grows_a_square_object():
    gt = torch.zeros(1, 2, 11, 11)
    gt[0, 0, 4:7, 4:7] = 2.0  # a 3x3 object moving right over a still background
    assert torch.equal(spread_object_motion(gt, 0), gt)
    one = spread_object_motion(gt, 1)
    expected = torch.zeros(1, 2, 11, 11)
    expected[0, 0, 3:8, 3:8] = 2.0  # grown by one pixel on every side, corners included
    assert torch.allclose(one, expected, atol=1e-6)
    two = spread_object_motion(gt, 2)
    assert torch.allclose(two[0, 0, 2:9, 2:9], torch.full((7, 7), 2.0), atol=1e-6)
    assert two[0, 0, 1].abs().max() == 0 and two[0, 1].abs().max() == 0
    with pytest.raises(ValueError, match="radius"):
        spread_object_motion(gt, -1)
