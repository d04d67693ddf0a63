"""Atomic checkpoint writes, safe loading, finding the checkpoint to resume and refusing foreign ones."""

from __future__ import annotations

import os
import pickle
import random
import select
import signal
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from evframe.utils import checkpoint as ck
from evframe.utils.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    RunMetadata,
    atomic_save,
    check_checkpoint_matches,
    checkpoint_for,
    checkpoint_weights,
    config_differences,
    load_module_weights,
    read_checkpoint,
    resolve_ckpt_path,
    weight_differences,
)


# ------------------------------------------------------------------------------------------------ atomic writes
def test_atomic_save_failing_mid_write_keeps_the_previous_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    atomic_save({"w": torch.full((4,), 1.0)}, target)
    before = target.read_bytes()

    def half_write(obj, f):  # writes some bytes, then the process "dies"
        f.write(b"garbage" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.torch, "save", half_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"w": torch.full((4,), 2.0)}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the temporary file was removed
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(target)["w"], torch.full((4,), 1.0))


def _save_forever(target: Path, ready_w: int) -> None:
    """Child process: saves 12 MB checkpoints ``{"k": k, "w": full(k)}`` to ``target`` until killed."""
    k = 0
    while True:
        k += 1
        # the tensor is filled by numpy: a large torch.full runs on the OpenMP pool, which a forked child can find
        # locked by the parent's threads forever (OpenMP is not fork-safe)
        weights = torch.from_numpy(np.full(3_000_000, float(k), dtype=np.float32))
        atomic_save({"k": k, "w": weights}, target)
        if k == 1:
            os.write(ready_w, b"1")


def test_sigkill_while_saving_never_leaves_a_half_written_checkpoint(tmp_path: Path) -> None:
    """A process saving 12 MB checkpoints in a loop is SIGKILLed at several moments: whatever moment it dies,
    last.ckpt is a complete checkpoint (the old one or the new one), never a truncated file."""
    target = tmp_path / "last.ckpt"
    for delay in (0.03, 0.11, 0.23):
        ready_r, ready_w = os.pipe()
        pid = os.fork()  # a fork, not a new interpreter: no second torch import on a 2-core machine
        if pid == 0:
            try:
                _save_forever(target, ready_w)
            finally:
                os._exit(1)
        # one save done: from here on the kill can fall anywhere in a write (a child stuck for a minute fails)
        if not select.select([ready_r], [], [], 60)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the saving child process made no checkpoint within 60 s")
        os.read(ready_r, 1)
        os.close(ready_r)
        os.close(ready_w)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        state = read_checkpoint(target)
        assert state["w"].shape == (3_000_000,) and bool((state["w"] == state["k"]).all())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert all(name.startswith(".last.ckpt.") for name in leftovers)  # a killed writer may leave only a temp file


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit_tiny(root: Path, callbacks: list, max_epochs: int = 2, ckpt_path: str | None = None) -> L.Trainer:
    data = TensorDataset(torch.arange(16.0).reshape(8, 2) / 8, torch.ones(8, 1))
    trainer = L.Trainer(default_root_dir=root, max_epochs=max_epochs, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
                        callbacks=callbacks)
    trainer.fit(_Tiny(), DataLoader(data, batch_size=4), ckpt_path=ckpt_path, weights_only=True)
    return trainer


def test_trainer_saves_through_the_atomic_plugin_and_checkpoints_load_with_weights_only(tmp_path: Path,
                                                                                          monkeypatch) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", recording_replace)
    metadata = RunMetadata()
    metadata.set_config({"task": {"name": "tiny"}, "model": {"_target_": "x.y", "width": 1}})
    ckpt_dir = tmp_path / "checkpoints"
    _fit_tiny(tmp_path, [L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True), metadata])
    last = ckpt_dir / "last.ckpt"
    assert (str(last) in [dst for _, dst in renames]), renames
    assert all(Path(src).parent == Path(dst).parent for src, dst in renames)  # temp file in the same folder
    state = read_checkpoint(last)  # weights_only=True: plain values and tensors only
    assert state["epoch"] == 1 and set(state["state_dict"]) == {"layer.weight", "layer.bias"}
    assert state["evframe"]["config"]["model"] == {"_target_": "x.y", "width": 1}
    assert state["evframe"]["wandb_run_id"] is None  # no W&B logger in this run


def test_rng_states_stored_in_the_checkpoint_are_restored_on_resume(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    saved = ck._rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    ck._set_rng_states(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


# ------------------------------------------------------------------------------------------------ safe loading
class _Payload:
    """Unpickling this would create a file: the proof that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_an_arbitrary_object_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="never unpickles arbitrary objects") as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_module_weights(torch.nn.Linear(2, 1), path)
    assert not marker.exists()


def test_unreadable_and_missing_checkpoints_fail_with_the_file_name(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="truncated.ckpt: not a readable torch checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="nothing.ckpt' does not exist"):
        read_checkpoint(tmp_path / "nothing.ckpt")


def test_every_kind_of_unreadable_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "dir.ckpt").mkdir()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.ckpt").write_text("hello")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))  # a pickle, but not torch's format
    torch.save({"w": torch.arange(3.0)}, tmp_path / "full.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "full.ckpt").read_bytes()[:300])
    torch.save(torch.arange(3.0), tmp_path / "tensor.ckpt")
    expected = {
        "dir.ckpt": "dir.ckpt' is a directory, not a checkpoint file",
        "empty.ckpt": "empty.ckpt: the file is empty (0 bytes)",
        "notes.ckpt": "notes.ckpt: not a torch checkpoint (torch.save writes a zip archive; this file starts with "
                      "b'hello')",
        "plain.pkl": "plain.pkl: not a readable torch checkpoint (torch says: Unsupported operand",
        "cut.ckpt": "cut.ckpt: not a readable torch checkpoint (the zip archive is incomplete",
        "tensor.ckpt": "tensor.ckpt: a checkpoint must hold a dict, found Tensor",
    }
    for name, message in expected.items():
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(tmp_path / name)
        assert message in str(err.value), str(err.value)


def test_torch_files_written_before_the_zip_format_still_load(tmp_path: Path) -> None:
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.arange(3.0))


def test_checkpoint_for_checks_what_each_use_needs(tmp_path: Path) -> None:
    lightning_keys = {"pytorch-lightning_version": "2.6.6", "epoch": 0, "global_step": 2, "loops": {},
                      "optimizer_states": [], "lr_schedulers": []}
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2), "aug._extra_state": {"seed": 3}}, **lightning_keys}, full)
    for purpose in ("weights", "test", "resume"):
        assert torch.equal(checkpoint_for(full, purpose)["state_dict"]["w"], torch.ones(2))
    weights_only = tmp_path / "weights_only.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "pytorch-lightning_version": "2.6.6", "epoch": 0,
                "global_step": 2}, weights_only)
    checkpoint_for(weights_only, "test")
    with pytest.raises(CheckpointError, match=r"weights_only.ckpt: resuming training needs 'loops', "
                                              r"'optimizer_states', 'lr_schedulers' in the checkpoint, which holds "
                                              r"only epoch, global_step, pytorch-lightning_version, state_dict"):
        checkpoint_for(weights_only, "resume")
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.ones(2)}, bare)
    assert torch.equal(checkpoint_for(bare, "weights")["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match=r"bare.pt: no 'state_dict' in the checkpoint \(its keys: w\)"):
        checkpoint_for(bare, "test")
    with pytest.raises(ValueError, match="purpose 'fit'"):
        checkpoint_for(full, "fit")


@pytest.mark.parametrize("state,message", [
    ({"epoch": 3}, r"no 'state_dict' in the checkpoint \(its keys: epoch\)"),
    ({"state_dict": (1, 2)}, r"'state_dict' is a tuple, expected a mapping"),
    ({"state_dict": {"w": torch.ones(1), "b": 0.5, "c": "x"}},
     r"'state_dict' must map parameter names to tensors; not a tensor: 'b' \(float\), 'c' \(str\)"),
])
def test_a_state_dict_must_map_names_to_tensors(state: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match="x.ckpt: " + message):
        checkpoint_weights(state, "x.ckpt")


def test_a_checkpoint_written_by_the_trainer_serves_every_use(tmp_path: Path) -> None:
    ckpt_dir = tmp_path / "checkpoints"
    _fit_tiny(tmp_path, [L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True)], max_epochs=1)
    for purpose in ("weights", "test", "resume"):
        assert set(checkpoint_for(ckpt_dir / "last.ckpt", purpose)["state_dict"]) == {"layer.weight", "layer.bias"}
    model = _Tiny()
    load_module_weights(model, ckpt_dir / "last.ckpt")
    assert torch.equal(model.layer.weight, read_checkpoint(ckpt_dir / "last.ckpt")["state_dict"]["layer.weight"])


def test_config_differences_list_every_differing_identity_key() -> None:
    saved = {"task": {"name": "flow", "module": {"_target_": "evframe.tasks.flow.FlowLightningModule"}},
             "model": {"_target_": "m.midinet2", "base": 16, "depth": 2},
             "preprocess": {"name": "event_cube", "kwargs": {"num_utbins": 3}, "delta_t": 50000}}
    current = {"task": {"name": "flow", "module": {"_target_": "evframe.tasks.flow.FlowLightningModule"}},
               "model": {"_target_": "m.eminet", "base": 16},
               "preprocess": {"name": "event_cube", "kwargs": {"num_utbins": 3}, "delta_t": 20000}}
    assert config_differences(saved, current) == [
        "model._target_: checkpoint 'm.midinet2', config 'm.eminet'",
        "model.depth: checkpoint 2, config <absent>",
    ]  # delta_t is not an identity key: a model may be evaluated at another bin duration
    with pytest.raises(CheckpointError, match=r"another task or model[\s\S]*model._target_"):
        check_checkpoint_matches({"evframe": {"config": saved}}, "x.ckpt", current)
    check_checkpoint_matches({"evframe": {"config": saved}}, "x.ckpt", saved)  # identical: accepted


def test_weights_of_another_network_are_listed_by_name_and_shape() -> None:
    weights = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 1)).state_dict()
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    assert weight_differences(weights, model) == [
        "not in the model: 1.weight, 1.bias",
        "shape differs: 0.weight: checkpoint (4, 2), model (3, 2), 0.bias: checkpoint (4,), model (3,)",
    ]
    with pytest.raises(CheckpointError, match="weights do not fit Sequential"):
        check_checkpoint_matches({"state_dict": weights}, "foreign.ckpt", {}, model)


# ------------------------------------------------------------------------------------------------ finding
def _touch_ckpt(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"k": 1}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_ckpt_path_last_prefers_this_run_then_the_latest_run_of_the_experiment(tmp_path: Path) -> None:
    runs = tmp_path / "outputs" / "flow" / "runs"
    old = _touch_ckpt(runs / "a" / "checkpoints" / "last.ckpt", 1000)
    newer = _touch_ckpt(runs / "b" / "checkpoints" / "last.ckpt", 2000)
    (runs / "c").mkdir()  # a run that saved nothing
    current = runs / "d"
    current.mkdir()
    assert resolve_ckpt_path("last", current) == newer
    interrupted = _touch_ckpt(runs / "a" / "checkpoints" / "interrupted.ckpt", 3000)  # SIGTERM'd later
    assert resolve_ckpt_path("last", current) == interrupted
    own = _touch_ckpt(current / "hpc_ckpt_1.ckpt", 500)  # a requeued job: its own directory wins, however old
    assert resolve_ckpt_path("last", current) == own
    assert resolve_ckpt_path(str(old), current) == old.resolve()
    assert resolve_ckpt_path(None, current) is None


def test_ckpt_path_errors_name_what_is_missing(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="ckpt_path=last: no last.ckpt"):
        resolve_ckpt_path("last", run)
    with pytest.raises(CheckpointError, match="'/nope/model.ckpt' does not exist"):
        resolve_ckpt_path("/nope/model.ckpt", run)
