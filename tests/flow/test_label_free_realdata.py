"""A user's first run on real recordings without flow labels: ``python -m evframe.run task=flow ... debug=limit`` from
a directory holding two shared EVT 2.0 samples, as ``dataset=raw_stream`` and as ``dataset=folder``. It must train,
validate and test, and report the label-free metrics."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
FALLBACK_SAID = "no validation recording has flow labels"


def _user_run(cwd: Path, *overrides: str) -> tuple[dict[str, float], str]:
    """Runs the command as typed in ``cwd``; returns the run's metrics.json and the output."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    env.pop("EVFRAME_ROOT", None)  # outputs go under the directory the command runs from
    cmd = [sys.executable, "-m", "evframe.run", "task=flow", *overrides, "debug=limit"]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"{' '.join(cmd)} failed ({out.returncode}):\n{log[-6000:]}"
    [run_dir] = sorted((cwd / "outputs" / "flow" / "runs").iterdir())
    return json.loads((run_dir / "metrics.json").read_text()), log


def test_training_on_real_recordings_without_labels_reports_the_label_free_metrics(realdata: Path,
                                                                                    tmp_path: Path) -> None:
    samples = realdata / "prophesee_evt2"
    stream_dir, folder_dir = tmp_path / "stream", tmp_path / "folder"
    stream_dir.mkdir()
    for name in ("gen3_640x480_a.raw", "gen3_640x480_b.raw"):
        (stream_dir / name).symlink_to(samples / name)
    for split, name in (("train", "gen3_640x480_a.raw"), ("val", "gen3_640x480_b.raw"), ("test", "gen3_640x480_b.raw")):
        (folder_dir / "recordings" / split).mkdir(parents=True)
        (folder_dir / "recordings" / split / name).symlink_to(samples / name)

    streamed, stream_log = _user_run(stream_dir, "dataset=raw_stream", "dataset.paths=[gen3_640x480_a.raw]",
                                     "dataset.val_paths=[gen3_640x480_b.raw]")
    folder, folder_log = _user_run(folder_dir, "dataset=folder", "dataset.root=recordings")
    for metrics, log in ((streamed, stream_log), (folder, folder_log)):
        for key in ("val/fwl", "test/fwl", "val/loss", "test/loss", "val/data", "test/bw_deblur", "best/val/loss"):
            assert math.isfinite(metrics[key]), (key, metrics)
        assert "val/aee" not in metrics and "test/aee" not in metrics
        assert log.count(FALLBACK_SAID) == 1  # said once, not an exception
    # the folder form plays each RAW file from its first event, as the streaming loader does: the same numbers
    for key in ("val/fwl", "test/fwl", "val/loss"):
        assert folder[key] == pytest.approx(streamed[key], rel=1e-4), key
