"""Checkpoint callbacks: the scheduler's requeue signal (submitit's USR2 before a SLURM time limit) stops training after
the current batch, saves interrupted.ckpt, and only then hands over to the scheduler's own handler (which requeues and
exits); last.ckpt follows every epoch, also those that do not improve the monitored metric."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from evframe.utils.checkpoint import BestModelCheckpoint, InterruptCheckpoint, read_checkpoint


class TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(12, 2), batch_size=2)


class SignalAtBatch(L.Callback):
    def __init__(self, batch: int, signum: int) -> None:
        self.batch, self.signum = batch, signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


def _trainer(tmp_path: Path, *callbacks: L.Callback) -> L.Trainer:
    return L.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                     callbacks=list(callbacks))


@pytest.fixture
def restore_usr2():
    previous = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, previous)


def test_requeue_signal_saves_the_checkpoint_before_the_scheduler_handler_runs(tmp_path: Path, restore_usr2) -> None:
    interrupted = tmp_path / "checkpoints" / "interrupted.ckpt"
    calls: list[tuple[int, bool]] = []

    def scheduler(signum: int, frame) -> None:  # submitit's checkpoint_and_try_requeue would requeue and exit here
        calls.append((signum, interrupted.is_file()))

    signal.signal(signal.SIGUSR2, scheduler)
    callback = InterruptCheckpoint(tmp_path / "checkpoints", requeue_signal="USR2")
    with pytest.raises(SIGTERMException):
        _trainer(tmp_path, callback, SignalAtBatch(2, signal.SIGUSR2)).fit(TinyModule())
    assert calls == [(signal.SIGUSR2, True)]  # called once, after the checkpoint was on disk
    state = read_checkpoint(interrupted)
    assert state["epoch"] == 0 and state["global_step"] == 3  # batch 2 was still trained, then it stopped
    # outside a fit the signal goes straight to the scheduler's handler
    os.kill(os.getpid(), signal.SIGUSR2)
    assert calls[-1] == (signal.SIGUSR2, True) and len(calls) == 2


def test_without_a_scheduler_handler_the_signal_is_left_alone(tmp_path: Path, restore_usr2) -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    callback = InterruptCheckpoint(tmp_path / "checkpoints")
    trainer = _trainer(tmp_path, callback, SignalAtBatch(2, signal.SIGUSR2))
    trainer.fit(TinyModule())  # ignored signal: training runs to its end
    assert trainer.global_step == 12 and not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN


def test_unknown_signal_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="requeue_signal 'SIGNOPE' is not a signal"):
        InterruptCheckpoint(tmp_path, requeue_signal="SIGNOPE")


class WorseningModule(TinyModule):
    """Its validation metric gets worse every epoch: only epoch 0 is ever the best."""

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/aee", float(self.current_epoch), on_epoch=True, batch_size=2)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(2, 2), batch_size=2)


def test_last_checkpoint_follows_every_epoch_when_the_metric_does_not_improve(tmp_path: Path) -> None:
    """The config's checkpoint callbacks: epoch000.ckpt stays the best, last.ckpt is refreshed every epoch (what a
    killed run resumes from)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from evframe.config import instantiate, register_resolvers
    from evframe.run import CONFIG_DIR

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["callbacks=default"])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    callbacks = [instantiate(cfg.callbacks[name]) for name in ("model_checkpoint", "last_checkpoint")]
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks)
    trainer.fit(WorseningModule())
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch000.ckpt", "last.ckpt"]
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["epoch"] == 2
    assert trainer.checkpoint_callback.best_model_path.endswith("epoch000.ckpt")  # the runner tests this one


def test_best_score_survives_a_resume_into_another_directory(tmp_path: Path) -> None:
    old_dir, new_dir = tmp_path / "run_a" / "checkpoints", tmp_path / "run_b" / "checkpoints"
    old_dir.mkdir(parents=True)
    best = old_dir / "epoch000.ckpt"
    best.write_bytes(b"weights")
    state = {"dirpath": str(old_dir), "monitor": "val/aee", "best_model_score": torch.tensor(0.29),
             "best_model_path": str(best), "best_k_models": {str(best): torch.tensor(0.29)},
             "kth_best_model_path": str(best), "kth_value": torch.tensor(0.29), "last_model_path": ""}
    plain = ModelCheckpoint(dirpath=new_dir, monitor="val/aee", mode="min")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        plain.load_state_dict(dict(state))
    assert plain.best_model_score is None  # Lightning forgets the score: the next epoch would be "best"
    kept = BestModelCheckpoint(dirpath=new_dir, monitor="val/aee", mode="min")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        kept.load_state_dict(dict(state))
    assert float(kept.best_model_score) == pytest.approx(0.29)
    assert kept.best_model_path == str(best) and list(kept.best_k_models) == [str(best)]
    assert float(kept.kth_value) == pytest.approx(0.29)
    # once the earlier best file is gone there is nothing to test later: the ranking starts afresh
    best.unlink()
    fresh = BestModelCheckpoint(dirpath=new_dir, monitor="val/aee", mode="min")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        fresh.load_state_dict(dict(state))
    assert fresh.best_model_score is None and fresh.best_k_models == {}
