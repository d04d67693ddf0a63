"""EMAWeightAveraging: validation and checkpoints hold the moving average of the weights, the test after fitting
evaluates the averaged weights of the best checkpoint (Lightning's own callback puts that epoch's raw weights back),
and a resumed fit continues both the raw weights and the average.

The module has one scalar weight w = 0 trained by SGD (lr 1) on the loss ``w``: after optimizer step k, w = -k. With
decay 0.5 the average is a_1 = w_1 = -1 (the first update copies), a_k = (a_{k-1} + w_k) / 2:
a_2 = -1.5, a_3 = -2.25, a_4 = -3.125, a_5 = -4.0625, a_6 = -5.03125, a_7 = -6.015625, a_8 = -7.0078125.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging
from lightning.pytorch.callbacks import ModelCheckpoint

from evframe.utils.checkpoint import read_checkpoint
from evframe.utils.weight_averaging import EMAWeightAveraging

STEPS_PER_EPOCH = 3


class DriftingWeight(L.LightningModule):
    """w goes down by 1 per optimizer step; records the w each validation / test epoch evaluates."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.validated: list[float] = []
        self.tested: list[float] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.w * batch.sum()  # batch = [[1.]]: gradient 1

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/w", self.w.detach())
        self.validated.append(float(self.w.detach()))

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.tested.append(float(self.w.detach()))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1.0)

    def _loader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(STEPS_PER_EPOCH, 1), batch_size=1)

    train_dataloader = _loader

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(1, 1), batch_size=1)

    test_dataloader = val_dataloader


def _trainer(tmp_path: Path, averaging: L.Callback, max_epochs: int) -> L.Trainer:
    # the best epoch is the one with the highest evaluated w: the first, since w only goes down
    best = ModelCheckpoint(dirpath=tmp_path, filename="epoch{epoch:03d}", monitor="val/w", mode="max",
                           auto_insert_metric_name=False, save_last=True)
    return L.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                     callbacks=[averaging, best])


def test_validation_checkpoints_and_the_final_weights_hold_the_average(tmp_path: Path) -> None:
    module = DriftingWeight()
    trainer = _trainer(tmp_path, EMAWeightAveraging(decay=0.5), max_epochs=2)
    trainer.fit(module)
    assert module.validated == pytest.approx([-2.25, -5.03125])  # a_3, a_6; the raw weights were -3 and -6
    assert float(module.w.detach()) == pytest.approx(-5.03125)  # the module keeps the average when fitting ends
    first = read_checkpoint(tmp_path / "epoch000.ckpt")
    assert float(first["state_dict"]["w"]) == pytest.approx(-2.25)
    assert float(first["current_model_state"]["w"]) == pytest.approx(-3.0)
    assert trainer.checkpoint_callback.best_model_path.endswith("epoch000.ckpt")


@pytest.mark.parametrize(("callback", "expected"), [
    (EMAWeightAveraging, -2.25),  # the average that won the epoch
    (LightningEMAWeightAveraging, -3.0),  # Lightning's callback tests that epoch's raw weights instead
], ids=["evframe", "lightning"])
def test_the_test_after_fitting_evaluates_the_averaged_weights_of_the_best_checkpoint(
        tmp_path: Path, callback: type, expected: float) -> None:
    module = DriftingWeight()
    trainer = _trainer(tmp_path, callback(decay=0.5), max_epochs=2)
    trainer.fit(module)
    trainer.test(module, ckpt_path=trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert module.tested == pytest.approx([expected])


def test_validate_after_fitting_evaluates_the_loaded_checkpoint(tmp_path: Path) -> None:
    module = DriftingWeight()
    trainer = _trainer(tmp_path, EMAWeightAveraging(decay=0.5), max_epochs=2)
    trainer.fit(module)
    trainer.validate(module, ckpt_path=str(tmp_path / "epoch000.ckpt"), weights_only=True)
    assert module.validated[-1] == pytest.approx(-2.25)  # not the in-memory average of the last step


def test_a_resumed_fit_continues_the_raw_weights_and_the_average(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, EMAWeightAveraging(decay=0.5), max_epochs=2)
    trainer.fit(DriftingWeight())
    resumed = DriftingWeight()
    # two more steps from the end of epoch 1 (w = -6, a = -5.03125): w = -7, -8
    trainer = L.Trainer(max_steps=2 * STEPS_PER_EPOCH + 2, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=tmp_path, callbacks=[EMAWeightAveraging(decay=0.5)])
    trainer.fit(resumed, ckpt_path=str(tmp_path / "last.ckpt"), weights_only=True)
    # a_8; an average restarted from the raw w_6 would give -7.25
    assert float(resumed.w.detach()) == pytest.approx(-7.0078125)


def test_a_decay_outside_zero_to_one_is_refused_with_the_key() -> None:
    with pytest.raises(ValueError, match=r"callbacks.weight_averaging.decay: expected a number in \[0, 1\), got 1.5"):
        EMAWeightAveraging(decay=1.5)
