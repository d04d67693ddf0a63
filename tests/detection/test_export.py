"""TorchScript export: the scripted SSD gives the eager detector's boxes, runs with and without no_grad, and
reset_all() zeroes its memory."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from evframe.io import save_label_map
from evframe.tasks.detection.jitting import INFO_NAME, SSD, export_lightning_model
from evframe.tasks.detection.lightning_module import DetectionLightningModule
from evframe.tasks.detection.losses import DetectionLoss
from evframe.tasks.detection.single_stage_detector import SingleStageDetector

# torch deprecates TorchScript in favour of torch.export; the export is TorchScript on purpose (C++ applications)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")

TINY = dict(feature_extractor="Vanilla", in_channels=2, feature_base=4, feature_channels_out=8, num_levels=2,
            base_size=8, stem_depth=2)


def busy_detector(name: str = "Vanilla", num_classes: int = 3, seed: int = 0) -> SingleStageDetector:
    """A tiny detector whose head is randomised so that many boxes pass the thresholds."""
    torch.manual_seed(seed)
    net = SingleStageDetector(**dict(TINY, feature_extractor=name), num_classes=num_classes).eval()
    with torch.no_grad():
        net.rpn.cls_head[-1].weight.normal_()
        net.rpn.cls_head[-1].bias.zero_()
        net.rpn.loc_head[-1].weight.normal_(std=0.3)
    return net


def to_xywh(rows: torch.Tensor) -> torch.Tensor:
    return torch.cat([rows[:, :2], rows[:, 2:4] - rows[:, :2], rows[:, 4:]], dim=1)


def assert_same_boxes(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> None:
    assert [len(r) for row in a for r in row] == [len(r) for row in b for r in row]
    for row_a, row_b in zip(a, b, strict=True):
        for u, v in zip(row_a, row_b, strict=True):
            assert torch.allclose(u, v, atol=1e-5)


@pytest.mark.parametrize("name", ["Vanilla", "Vanilla_VGGRU"])
def test_scripted_ssd_gives_the_eager_detector_boxes_call_after_call(name: str) -> None:
    net = busy_detector(name)
    scripted = torch.jit.script(SSD(net, nms_thresh=0.5, max_boxes_per_input=net.max_boxes_per_input))
    x = torch.rand(2, 2, 2, 32, 40)
    for _ in range(2):  # the second call runs on the memory of the first
        with torch.no_grad():
            eager = net.get_boxes(x, 0.3, 0.5)
            jit = scripted(x, 0.3)
        assert sum(len(r) for row in jit for r in row) > 10
        assert_same_boxes(jit, [[to_xywh(r) for r in row] for row in eager])


def test_scripted_model_runs_with_and_without_no_grad() -> None:
    scripted = torch.jit.script(SSD(busy_detector()))
    x = torch.rand(1, 1, 2, 32, 40)
    scripted.reset_all()
    with_grad = scripted(x, 0.3)
    scripted.reset_all()
    with torch.no_grad():
        without = scripted(x, 0.3)
    assert_same_boxes(with_grad, without)
    assert len(with_grad) == 1 and len(with_grad[0]) == 1 and with_grad[0][0].shape[1] == 6


def test_export_files_and_reset_all_restores_the_first_output(tmp_path: Path) -> None:
    save_label_map(tmp_path / "label_map_dictionary.json", {0: "car", 1: "pedestrian", 2: "two_wheeler"})
    module = DetectionLightningModule(functools.partial(SingleStageDetector, **TINY), DetectionLoss(),
                                      functools.partial(torch.optim.AdamW, lr=1e-3),
                                      label_map=str(tmp_path / "label_map_dictionary.json"))
    module.model.load_state_dict(busy_detector().state_dict())
    preprocess = {"name": "histo", "delta_t": 50_000, "num_tbins": 4, "downsample": 1, "height": 32, "width": 40,
                  "kwargs": {"max_incr_per_pixel": 5}, "channels": 2}
    path = export_lightning_model(module, tmp_path / "export", nms_thresh=0.5, score_thresh=0.3,
                                  preprocess=preprocess, max_boxes_per_input=50)
    info = json.loads((tmp_path / "export" / INFO_NAME).read_text())
    assert info["label_map"] == ["background", "car", "pedestrian", "two_wheeler"]
    assert (info["height"], info["width"], info["in_channels"], info["delta_t"], info["downsample"]) == (32, 40, 2,
                                                                                                       50_000, 1)
    assert info["preprocess"] == "histo" and info["score_thresh"] == 0.3 and info["box_format"].startswith("x1,y1,w")

    loaded = torch.jit.load(str(path))
    x = torch.rand(1, 2, 2, 32, 40)
    first = loaded(x, 0.3)
    second = loaded(x, 0.3)
    assert any(len(a) != len(b) or not torch.allclose(a, b) for a, b in zip(first[0], second[0], strict=True))
    loaded.reset_all()
    states = [b for n, b in loaded.named_buffers() if n.endswith(("prev_h", "prev_c"))]
    assert len(states) == 4 and all(s.numel() > 0 and s.eq(0).all() for s in states)
    assert_same_boxes(loaded(x, 0.3), first)
    eager = SSD(module.model, 0.5, 50)
    assert_same_boxes(eager(x, 0.3), first)  # the file holds the trained weights
