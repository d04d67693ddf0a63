"""python -m evframe.run task=e2v end to end: train/val/test on every evaluation source, and the video."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _frame_folder(root: Path) -> Path:
    root.mkdir()
    lines = []
    for i in range(12):
        image = np.full((24, 32), 60, np.uint8)
        image[4:20, 2 * i: 2 * i + 8] = 200
        cv2.imwrite(str(root / f"{i:02d}.png"), image)
        lines.append(f"{0.02 * i:.3f} {i:02d}.png")
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    return root


def test_fdr_run_trains_and_tests_on_clips_synthetic_recordings_and_real_frames(run_e2v, tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "bar")
    run_e2v("debug=fdr", "logger=csv", f"dataset.eval.frame_folders=[{folder}]",
            "callbacks.e2v.video_result_every_n_epochs=1", "callbacks.e2v.num_video_batches=1")
    (run,) = sorted((tmp_path / "outputs" / "e2v" / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    for source in ("clips", "synthetic", "frames_bar"):
        for name in ("mse", "ssim", "mse_baseline", "ssim_baseline"):
            assert math.isfinite(metrics[f"test/{source}/{name}"]), f"test/{source}/{name}"
    assert metrics["test/ssim"] == metrics["test/clips/ssim"]  # the first source is also logged plainly
    assert 0 < metrics["test/clips/mse"] < 1 and -1 <= metrics["test/synthetic/ssim"] <= 1
    videos = list((run / "videos").glob("e2v_epoch*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
