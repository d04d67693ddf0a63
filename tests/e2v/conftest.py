"""Small clip and event fixtures for the event-to-video tests."""

from __future__ import annotations

import pytest
import torch

# tests are timed on a 2-core machine shared with other jobs: one torch thread each
torch.set_num_threads(1)


@pytest.fixture
def timing():
    from evframe.tasks.e2v.clips import ClipTiming

    return ClipTiming(num_bins=4, delta_t=20_000, frames_per_bin=2)


@pytest.fixture(scope="session")
def e2v_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Generated datasets shared by the end-to-end runs of this folder."""
    return tmp_path_factory.mktemp("e2v_datasets")


@pytest.fixture
def run_e2v(tmp_path, e2v_data_dir):
    """run_e2v(*overrides) runs ``python -m evframe.run task=e2v ...`` with outputs under tmp_path/outputs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]

    def _run(*overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
        env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
        from cli_helpers import share_dataset_cache

        share_dataset_cache(tmp_path, e2v_data_dir)
        cmd = [sys.executable, "-m", "evframe.run", "task=e2v", *overrides]
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                                 f"{out.stderr[-5000:]}")
        return out

    return _run
