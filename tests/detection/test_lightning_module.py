"""The detection Lightning module: classes from the label map, steps on a hand-made batch, fine-tuning from a
detector trained on other classes."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from evframe.data.metadata import FileMetadata
from evframe.io import save_label_map
from evframe.io.dtypes import BBOX_DTYPE
from evframe.tasks.detection.lightning_module import DetectionLightningModule
from evframe.tasks.detection.losses import DetectionLoss
from evframe.tasks.detection.single_stage_detector import SingleStageDetector

TINY = dict(feature_extractor="Vanilla", in_channels=2, feature_base=4, feature_channels_out=8, num_levels=2,
            base_size=8, stem_depth=2)


def make_module(tmp_path: Path, names: dict[int, str], **kwargs) -> DetectionLightningModule:
    label_map = tmp_path / f"map_{'_'.join(names.values())}.json"
    save_label_map(label_map, names)
    return DetectionLightningModule(functools.partial(SingleStageDetector, **TINY), DetectionLoss(),
                                    functools.partial(torch.optim.AdamW, lr=1e-3), label_map=str(label_map), **kwargs)


def make_batch() -> dict:
    """T=2, B=2: stream 0 plays a recording with one box per bin, stream 1 is padding."""
    md = FileMetadata("rec_td.dat", 1_000_000, 50_000, 2, height=32, width=32)
    pad = FileMetadata.padding_metadata(50_000, 2, 32, 32)
    box = np.zeros(1, dtype=BBOX_DTYPE)
    box["t"], box["x"], box["y"], box["w"], box["h"], box["class_id"] = 50_000, 4, 4, 12, 12, 1
    return {"inputs": torch.rand(2, 2, 2, 32, 32), "labels": [[box, None], [box.copy(), None]],
            "mask_keep_memory": torch.zeros(2), "frame_is_labeled": torch.tensor([[True, False], [True, False]]),
            "video_infos": [(md, 0, 100_000), (pad, 0, 0)]}


def test_module_builds_the_detector_for_the_label_map_classes(tmp_path: Path) -> None:
    module = make_module(tmp_path, {0: "empty", 1: "car", 2: "bus"}, wanted_classes=["bus"])
    assert module.classes == ["bus"] and module.model.num_classes == 1
    assert module.model.rpn.num_logits == 2


def test_training_and_validation_steps(tmp_path: Path) -> None:
    module = make_module(tmp_path, {0: "car", 1: "pedestrian"})
    batch = make_batch()
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # no trainer attached
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    assert {"train/loss", "train/loc_loss", "train/cls_loss"} <= set(logged)
    module.eval()
    with torch.no_grad():
        module.validation_step(batch, 0)
    assert module.evaluators["val"].num_recordings == 1  # the padding stream is not a recording
    metrics = module.evaluators["val"].compute()
    assert 0.0 <= metrics["mAP"] <= 1.0


def test_load_pretrained_transfers_weights_and_remaps_shared_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = make_module(tmp_path, {0: "car", 1: "pedestrian"})
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    checkpoint = {"state_dict": source.state_dict(), "detection_classes": source.classes}
    torch.save(checkpoint, tmp_path / "src.ckpt")
    target = make_module(tmp_path, {0: "pedestrian", 1: "bus"}, pretrained=str(tmp_path / "src.ckpt"))
    src_stem = source.model.feature_extractor.stem.module[0][0][0].weight
    assert torch.equal(target.model.feature_extractor.stem.module[0][0][0].weight, src_stem)
    s, d = source.model.rpn.cls_head[-1], target.model.rpn.cls_head[-1]
    assert torch.equal(d.weight[1], s.weight[2]) and torch.equal(d.weight[0], s.weight[0])  # pedestrian, background
    assert not torch.equal(d.weight[2], s.weight[1])  # bus is new: not car's weights
    assert d.bias[2].item() == pytest.approx(0.0)  # ... it keeps the focal prior initialisation


def test_checkpoint_records_the_classes(tmp_path: Path) -> None:
    module = make_module(tmp_path, {0: "car"})
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["detection_classes"] == ["car"]
