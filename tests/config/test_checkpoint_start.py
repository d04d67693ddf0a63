"""A run refuses an unusable ``ckpt_path`` at start (before any data, model or output file), in every mode, naming
the file and what is wrong, instead of a KeyError from deep inside Lightning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import evframe.runner as runner
from evframe.config.prepare import prepare_config
from evframe.utils.checkpoint import CheckpointError

# the training state a resumed fit needs besides the weights (what Lightning's ModelCheckpoint writes)
TRAINING_STATE = {"pytorch-lightning_version": "2.6.6", "epoch": 1, "global_step": 4, "loops": {},
                  "optimizer_states": [], "lr_schedulers": []}


def _write_bad(kind: str, path: Path) -> Path:
    """Writes the unusable checkpoint ``kind`` at ``path``."""
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch: 3\n")
    elif kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}, **TRAINING_STATE}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "no_state_dict":
        torch.save(dict(TRAINING_STATE), path)
    elif kind == "state_dict_list":
        torch.save({"state_dict": [torch.zeros(2)], **TRAINING_STATE}, path)
    elif kind == "state_dict_values":
        torch.save({"state_dict": {"layer.weight": torch.zeros(2), "layer.scale": 3}, **TRAINING_STATE}, path)
    return path


BAD = {
    "missing": "does not exist",
    "directory": "is a directory; give a checkpoint file",
    "empty": "the file is empty (0 bytes), not a torch checkpoint",
    "text": "not a torch checkpoint (torch.save writes a zip archive; this file starts with b'epoch: 3",
    "truncated": "not a readable torch checkpoint (the zip archive is incomplete: a truncated or damaged file)",
    "not_a_dict": "a checkpoint must hold a dict, found list",
    "no_state_dict": "no 'state_dict' in the checkpoint (its keys: epoch, global_step, loops, lr_schedulers, "
                     "optimizer_states, pytorch-lightning_version)",
    "state_dict_list": "'state_dict' is a list, expected a mapping of parameter names to tensors",
    "state_dict_values": "'state_dict' must map parameter names to tensors; not a tensor: 'layer.scale' (int)",
}
MODES = {"train": "task=flow", "test": "task=flow", "predict": "task=flow", "export": "task=detection"}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", list(BAD))
def test_an_unusable_checkpoint_stops_every_mode_at_start(compose_cfg, tmp_path: Path, mode: str, kind: str) -> None:
    path = _write_bad(kind, tmp_path / f"{kind}.ckpt")
    cfg = compose_cfg([MODES[mode], f"mode={mode}", f"ckpt_path={path}", "smoke=true", "logger=none"])
    with pytest.raises(CheckpointError) as err:
        runner.run(cfg)
    assert str(path) in str(err.value) and BAD[kind] in str(err.value)
    assert not (Path(cfg.paths.output_dir) / "config.yaml").exists()  # refused before the run wrote anything


def test_resuming_needs_the_training_state_and_testing_a_lightning_checkpoint(compose_cfg, tmp_path: Path) -> None:
    weights_only = tmp_path / "weights_only.ckpt"  # ModelCheckpoint(save_weights_only=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 1, "global_step": 4,
                "pytorch-lightning_version": "2.6.6"}, weights_only)
    cfg = compose_cfg(["mode=train", f"ckpt_path={weights_only}", "smoke=true", "logger=none"])
    with pytest.raises(CheckpointError, match=r"weights_only.ckpt: resuming training needs 'loops', "
                                              r"'optimizer_states', 'lr_schedulers' in the checkpoint.*"
                                              r"save_weights_only=True"):
        runner.run(cfg)
    bare = tmp_path / "bare.pt"  # torch.save(model.state_dict())
    torch.save({"w": torch.zeros(2)}, bare)
    cfg = compose_cfg(["mode=test", f"ckpt_path={bare}", "smoke=true", "logger=none"])
    with pytest.raises(CheckpointError, match=r"bare.pt: no 'state_dict' in the checkpoint \(its keys: w\)"):
        runner.run(cfg)


def test_a_checkpoint_of_another_task_is_refused_before_anything_is_built(compose_cfg, tmp_path: Path,
                                                                         monkeypatch) -> None:
    detection = prepare_config(compose_cfg(["task=detection", "smoke=true", "logger=none"]))
    path = tmp_path / "detection.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, **TRAINING_STATE,
                "evframe": {"config": OmegaConf.to_container(detection, resolve=True)}}, path)

    def no_build(*args, **kwargs):
        raise AssertionError("a component was built before the checkpoint was checked")

    monkeypatch.setattr(runner, "_build", no_build)
    for mode in ("train", "test", "predict"):
        cfg = compose_cfg(["task=flow", f"mode={mode}", f"ckpt_path={path}", "smoke=true", "logger=none"])
        with pytest.raises(CheckpointError, match=r"detection.ckpt was trained with another task or model than this "
                                                  r"run's config:\n  task.name: checkpoint 'detection', config 'flow'"
                                                  r"\n  task.module._target_: checkpoint "
                                                  r"'evframe.tasks.detection.DetectionLightningModule'"):
            runner.run(cfg)


def test_predict_loads_a_bare_state_dict_and_refuses_one_of_another_network(compose_cfg, tmp_path: Path) -> None:
    cfg = runner.prepare_checkpoint(prepare_config(compose_cfg(["task=flow", "mode=predict", "smoke=true",
                                                                "logger=none"])))
    module = runner._trained_module(cfg)  # untrained: no ckpt_path
    trained = {k: torch.full_like(v, 0.25) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
               for k, v in module.state_dict().items()}
    good = tmp_path / "flow_weights.pt"
    torch.save(trained, good)
    cfg.ckpt_path = str(good)
    loaded = runner._trained_module(cfg)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in trained.items() if isinstance(v, torch.Tensor))
    stem = "feature_extractor.stem.0.weight"
    assert not torch.equal(module.state_dict()[stem], trained[stem])  # the untrained weights were not all 0.25
    foreign = tmp_path / "foreign.pt"
    torch.save(torch.nn.Linear(2, 1).state_dict(), foreign)
    cfg.ckpt_path = str(foreign)
    with pytest.raises(CheckpointError, match=r"foreign.pt: its weights do not fit FlowLightningModule:\n  missing "
                                              r"in the checkpoint: .*\n  not in the model: weight, bias"):
        runner._trained_module(cfg)
