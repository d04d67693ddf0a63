"""Where a run writes: outputs/ of the directory the command starts from, or of $EVFRAME_ROOT."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from evframe.config import register_resolvers
from evframe.run import CONFIG_DIR


def _paths(*overrides: str):
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


def test_outputs_and_the_sweep_directory_resolve_before_hydra_runs_a_job(tmp_path: Path, monkeypatch) -> None:
    """A sweeper builds ``hydra.sweep.dir`` before any job exists (no ``hydra:runtime``): it must resolve then."""
    monkeypatch.delenv("EVFRAME_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = _paths("task=detection")
    assert cfg.paths.root_dir == str(tmp_path)
    assert cfg.paths.data_dir == str(tmp_path / "outputs" / "datasets")
    sweep = Path(cfg.hydra.sweep.dir)
    assert sweep.parent == tmp_path / "outputs" / "detection" / "multiruns"
    assert Path(cfg.hydra.run.dir).parent == tmp_path / "outputs" / "detection" / "runs"


@pytest.mark.parametrize("relative", [False, True])
def test_evframe_root_moves_the_outputs(tmp_path: Path, monkeypatch, relative: bool) -> None:
    root = tmp_path / "elsewhere"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVFRAME_ROOT", "elsewhere" if relative else str(root))
    cfg = _paths()
    assert cfg.paths.output_root == str(root / "outputs")
    assert Path(cfg.hydra.sweep.dir).parent == root / "outputs" / "flow" / "multiruns"
