"""`python -m evframe.run task=detection` end to end on the tiny synthetic dataset: train/val/test with COCO
metrics, the demo video, checkpoints, mode=test, mode=export (TorchScript + JSON) and mode=predict."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision  # noqa: F401 - the exported model's NMS is torchvision's operator
from cli_helpers import share_dataset_cache

# torch deprecates TorchScript in favour of torch.export; the export is TorchScript on purpose (C++ applications)
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic dataset is generated once for this module's runs."""
    return tmp_path_factory.mktemp("datasets")


def run(tmp_path: Path, data_dir: Path, *overrides: str) -> Path:
    """Runs the entrypoint (outputs under tmp_path) and returns the new run directory."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    before = set(_runs(tmp_path))
    share_dataset_cache(tmp_path, data_dir)
    cmd = [sys.executable, "-m", "evframe.run", "task=detection", *overrides]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    (new,) = set(_runs(tmp_path)) - before
    return new


def _runs(tmp_path: Path) -> list[Path]:
    base = tmp_path / "outputs" / "detection" / "runs"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_fdr_smoke_run_reports_coco_metrics(tmp_path: Path, data_dir: Path) -> None:
    result = metrics(run(tmp_path, data_dir, "debug=fdr", "logger=csv"))
    for name in ("mAP", "mAP_50", "mAP_75", "mAP_small", "mAP_medium", "mAP_large"):
        value = result[f"test/{name}"]
        assert math.isfinite(value) and (value == -1.0 or 0.0 <= value <= 1.0)
    assert math.isfinite(result["train/loss"]) and result["train/loss"] > 0  # focal + smooth-L1 of a real batch


def test_train_video_then_test_export_and_predict_from_the_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    trained_dir = run(tmp_path, data_dir, "debug=limit", "logger=csv",
                      "callbacks.detection.video_result_every_n_epochs=1")
    videos = list((trained_dir / "videos").glob("detection_epoch*.mp4"))
    assert videos and videos[0].stat().st_size > 1000
    ckpt = sorted((trained_dir / "checkpoints").glob("epoch*.ckpt"))[-1]
    trained = metrics(trained_dir)

    tested = metrics(run(tmp_path, data_dir, "debug=limit", "logger=csv", "mode=test", f"ckpt_path={ckpt}"))
    assert tested["test/mAP_50"] == pytest.approx(trained["test/mAP_50"], abs=1e-9)

    export_dir = run(tmp_path, data_dir, "debug=limit", "logger=none", "mode=export", f"ckpt_path={ckpt}") / "export"
    info = json.loads((export_dir / "info_ssd_jit.json").read_text())
    assert info["label_map"] == ["background", "car", "pedestrian", "two_wheeler"]
    assert (info["height"], info["width"]) == (48, 64) and info["preprocess"] == "histo"
    model = torch.jit.load(str(export_dir / info["model"]))
    boxes = model(torch.zeros(1, 1, info["in_channels"], info["height"], info["width"]), 0.0)
    assert len(boxes) == 1 and boxes[0][0].shape[1] == 6

    recording = sorted(data_dir.glob("synthetic_tiny_seed0/test/*_td.dat"))[0]
    predicted = run(tmp_path, data_dir, "debug=limit", "logger=none", "mode=predict", f"ckpt_path={ckpt}",
                    f"task.predict.paths=[{recording}]")
    (video,) = predicted.glob("predictions/*_detections.mp4")
    assert video.stat().st_size > 1000
