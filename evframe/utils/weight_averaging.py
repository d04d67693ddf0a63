"""An exponential moving average of the weights that validation, checkpoints and the final test all use.

:class:`EMAWeightAveraging` is Lightning's callback of that name with one difference. Lightning's version, on *any*
checkpoint load while its average exists, puts the raw (non-averaged) weights the checkpoint keeps under
``current_model_state`` back into the module, and swaps its in-memory average in at every validation epoch. That is
right when a fit resumes, but the runner tests the best checkpoint with the same trainer right after fitting: there it
would test the raw weights of the epoch that the *averaged* weights won, and a later ``trainer.validate`` would
evaluate the stale in-memory average instead of the loaded checkpoint. Here both only happen while fitting; outside
it, a checkpoint's ``state_dict`` (the averaged weights) is what gets evaluated.

Enable with ``callbacks.weight_averaging`` (see ``conf/callbacks/flow.yaml``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMAWeightAveraging(LightningEMAWeightAveraging):
    """EMA of the module's parameters and buffers, updated after every optimizer step:
    ``average = decay * average + (1 - decay) * weights`` (the first update copies the weights).

    While fitting, validation runs on the average and every checkpoint stores it as ``state_dict`` (the raw weights
    under ``current_model_state``, so a resumed fit continues from both). When fitting ends the module keeps the
    average. Outside fitting (test, validate, predict) a loaded checkpoint's ``state_dict`` is used as is.

    Args:
        decay: weight of the previous average per step; the average spans about ``1 / (1 - decay)`` steps.
        update_starting_at_step / update_starting_at_epoch / update_every_n_steps / use_buffers / device: as in
            Lightning's ``EMAWeightAveraging``.
    """

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"callbacks.weight_averaging.decay: expected a number in [0, 1), got {decay!r}")
        super().__init__(decay=decay, **kwargs)
        self.decay = decay

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_end(trainer, pl_module)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # outside fitting the module already holds the checkpoint's state_dict: the averaged weights to evaluate
        if self._fitting(trainer):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
