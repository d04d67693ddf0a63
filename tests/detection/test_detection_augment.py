"""Left-right mirroring of whole recordings for training."""

from __future__ import annotations

import numpy as np
import torch

from evframe.data.metadata import FileMetadata
from evframe.io.dtypes import BBOX_DTYPE
from evframe.tasks.detection.augment import flip_recording, hflip_batch, hflip_boxes


def test_hflip_boxes_mirrors_the_left_edge() -> None:
    boxes = np.zeros(2, dtype=BBOX_DTYPE)
    boxes["x"], boxes["w"], boxes["y"] = [0, 10], [4, 20], [3, 5]
    out = hflip_boxes(boxes, 40)
    assert out["x"].tolist() == [36, 10] and out["w"].tolist() == [4, 20] and out["y"].tolist() == [3, 5]
    assert boxes["x"].tolist() == [0, 10]  # a copy
    assert hflip_boxes(None, 40) is None


def test_a_recording_flips_the_same_way_for_a_whole_epoch_and_half_of_them_flip() -> None:
    paths = [f"rec_{i}_td.dat" for i in range(200)]
    assert all(flip_recording(p, 3) == flip_recording(p, 3) for p in paths)
    share = np.mean([flip_recording(p, 3) for p in paths])
    assert 0.35 < share < 0.65
    assert any(flip_recording(p, 3) != flip_recording(p, 4) for p in paths)  # drawn anew each epoch


def test_hflip_batch_flips_only_the_chosen_streams() -> None:
    paths = [f"rec_{i}_td.dat" for i in range(50)]
    flipped = next(p for p in paths if flip_recording(p, 0))
    kept = next(p for p in paths if not flip_recording(p, 0))
    infos = [(FileMetadata(flipped, 10**6, 50_000, 1), 0, 50_000), (FileMetadata(kept, 10**6, 50_000, 1), 0, 50_000),
             (FileMetadata.padding_metadata(50_000, 1), 0, 0)]
    box = np.zeros(1, dtype=BBOX_DTYPE)
    box["x"], box["w"] = 1, 2
    inputs = torch.arange(3 * 2 * 5, dtype=torch.float32).view(1, 3, 1, 2, 5)
    batch = {"inputs": inputs, "labels": [[box, box, None]], "video_infos": infos}
    out = hflip_batch(batch, 0)
    assert torch.equal(out["inputs"][0, 0], inputs[0, 0].flip(-1))
    assert torch.equal(out["inputs"][0, 1:], inputs[0, 1:])
    assert out["labels"][0][0]["x"].tolist() == [2] and out["labels"][0][1]["x"].tolist() == [1]
    assert out["labels"][0][2] is None and batch["inputs"] is inputs  # the input batch is left as it was
