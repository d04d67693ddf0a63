"""evframe installed from a wheel composes its configs from any directory (they ship inside the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_wheel_ships_configs_and_composes_outside_the_checkout(tmp_path: Path) -> None:
    # build from a copy: setuptools leaves a build/ folder in the source tree
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("evframe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "evframe/conf/config.yaml" in names and "evframe/conf/model/midinet2.yaml" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the wheel's copy must win over the editable checkout: PYTHONPATH comes before site-packages
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import evframe; print(evframe.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))
    out = subprocess.run([sys.executable, "-m", "evframe.run", "--cfg", "job", "model=eminet"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.model._target_ == "evframe.tasks.flow.feature_extractors.eminet"
    assert cfg.task.name == "flow"
