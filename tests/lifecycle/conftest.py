"""Runs of ``python -m evframe.run`` in subprocesses for the lifecycle tests, on one tiny synthetic dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import share_dataset_cache

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def lifecycle_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated datasets are cached here for the whole session (the tiny preset takes seconds)."""
    return tmp_path_factory.mktemp("lifecycle_datasets")


def evframe_command(root: Path, data_dir: Path, *overrides: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a run started in ``root`` (outputs under ``root/outputs``)."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(HERE)]))
    share_dataset_cache(root, data_dir)
    cmd = [sys.executable, "-m", "evframe.run", *overrides]
    if any("lifecycle_helpers" in override for override in overrides):  # the test's own callbacks
        cmd.append("allowed_targets=[lifecycle_helpers]")
    return cmd, env


@pytest.fixture(scope="module")
def module_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle_runs")


@pytest.fixture(scope="module")
def evframe_runner(lifecycle_data_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``evframe_runner(root, *overrides, check=True)`` runs the entrypoint with outputs under ``root/outputs``."""

    def _run(root: Path, *overrides: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        cmd, env = evframe_command(root, lifecycle_data_dir, *overrides)
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                                 f"{out.stderr[-6000:]}")
        return out

    return _run

