"""Shared fixtures: the repository root, the shared real-data folder and a composed config factory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"

# tests never talk to W&B servers
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def realdata() -> Path:
    """Folder of small real recordings (skips the test when absent, as on a user's fresh machine)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real recordings folder {REALDATA} is absent")
    return REALDATA
