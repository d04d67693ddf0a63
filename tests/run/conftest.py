"""Helpers to run `python -m evframe.run` in a subprocess, sharing one tiny synthetic dataset per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import share_dataset_cache

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated datasets are cached here for the whole session (the tiny preset takes seconds)."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def run_evframe(tmp_path: Path, shared_data_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run_evframe(*overrides, check=True) runs the entrypoint from tmp_path (outputs under tmp_path/outputs)."""

    def _run(*overrides: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO_ROOT))
        share_dataset_cache(tmp_path, shared_data_dir)
        cmd = [sys.executable, "-m", "evframe.run", *overrides]
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n"
                                 f"{out.stderr[-6000:]}")
        return out

    return _run
