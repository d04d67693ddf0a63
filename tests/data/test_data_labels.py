"""load_labels hooks: stub and dense flow (unit conversion, bin assignment, downsampling)."""

import numpy as np
import pytest
import torch

from evframe.data.labels import last_index_per_bin, load_flow, load_labels_stub
from evframe.data.metadata import FileMetadata
from evframe.io import write_flow_h5


def test_stub():
    labels, labelled = load_labels_stub(None, 0, 30, torch.zeros(3, 2, 4, 4))
    assert labels == [None] * 3
    assert labelled.dtype == bool and not labelled.any() and labelled.shape == (3,)


def test_last_index_per_bin():
    ts = np.array([5, 12, 18, 35, 40])
    np.testing.assert_array_equal(last_index_per_bin(ts, 0, 10, 4), [0, 2, -1, 3])
    np.testing.assert_array_equal(last_index_per_bin(ts, 10, 10, 3), [2, -1, 3])


@pytest.fixture
def flow_recording(tmp_path):
    h, w = 4, 6
    flow = np.zeros((3, 2, h, w), dtype=np.float32)
    flow[0, 0], flow[0, 1] = 100.0, -200.0  # px/s
    flow[1, 0], flow[1, 1] = 50.0, 0.0
    # third map: x flow 1000 px/s on the top-left 2x2 block only, to check area averaging
    flow[2, 0, :2, :2] = [[1000.0, 3000.0], [5000.0, 7000.0]]
    write_flow_h5(tmp_path / "rec_flow.h5", flow, np.array([5_000, 12_000, 25_000]))
    return tmp_path / "rec_td.dat", h, w


def test_load_flow_converts_px_per_s_to_px_per_bin(flow_recording):
    path, h, w = flow_recording
    md = FileMetadata(path, 40_000, 10_000, 3, height=h, width=w)
    labels, labelled = load_flow(md, 0, 30_000, torch.zeros(3, 2, h, w))
    assert labelled.tolist() == [True, True, True]
    # 100 px/s over 10 ms = 1 px per bin
    torch.testing.assert_close(labels[0][0], torch.full((h, w), 1.0))
    torch.testing.assert_close(labels[0][1], torch.full((h, w), -2.0))
    torch.testing.assert_close(labels[1][0], torch.full((h, w), 0.5))
    assert labels[2][0, 1, 1].item() == pytest.approx(70.0)
    assert labels[0].dtype == torch.float32 and labels[0].shape == (2, h, w)

    later, labelled = load_flow(md, 30_000, 30_000, torch.zeros(3, 2, h, w))
    assert later == [None, None, None] and not labelled.any()


def test_load_flow_downsampled(flow_recording):
    path, h, w = flow_recording
    md = FileMetadata(path, 40_000, 10_000, 3, height=h, width=w, downsample=1)
    labels, labelled = load_flow(md, 0, 30_000, torch.zeros(3, 2, h // 2, w // 2))
    assert labels[0].shape == (2, 2, 3)
    torch.testing.assert_close(labels[0][1], torch.full((2, 3), -1.0))  # -2 px per bin halved
    # area interpolation: mean of (10, 30, 50, 70) px per bin, halved
    assert labels[2][0, 0, 0].item() == pytest.approx(20.0)
    assert labels[2][0, 1, 2].item() == 0.0


def test_load_flow_size_mismatch(flow_recording):
    path, h, w = flow_recording
    md = FileMetadata(path, 40_000, 10_000, 3, height=h + 1, width=w)
    with pytest.raises(ValueError, match="flow maps are 4x6"):
        load_flow(md, 0, 30_000, torch.zeros(3, 2, h + 1, w))
