"""An exponential moving average of the weights that validation, checkpoints and the final test all use.

:class:`EMAWeightAveraging` is Lightning's callback of that name with one difference. Lightning's version, on *any*
checkpoint load while its average exists, puts the raw (non-averaged) weights the checkpoint keeps under
``current_model_state`` back into the module. That is right when a fit resumes, but the runner tests the best
checkpoint with the same trainer right after fitting: there it would test the raw weights of the epoch that the
*averaged* weights won. Here a checkpoint loaded outside fitting is evaluated with its ``state_dict``, the averaged
weights.

Enable with ``callbacks.weight_averaging`` (see ``conf/callbacks/flow.yaml``). :func:`evaluated_weights` puts the
average into the module for the length of a block, for what renders the model between validations (the videos).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


@contextmanager
def evaluated_weights(trainer: L.Trainer, pl_module: L.LightningModule) -> Iterator[None]:
    """Inside the block ``pl_module`` holds the weights validation evaluates: the average of the trainer's
    weight-averaging callback while it keeps one (fitting), else its own weights (nothing changes). The raw weights
    are put back afterwards, also when the block raises."""
    averaging = next((cb for cb in trainer.callbacks if isinstance(cb, WeightAveraging)
                      and getattr(cb, "_average_model", None) is not None), None)
    if averaging is None:
        yield
        return
    # the same exchange of parameter and buffer values Lightning makes around every validation epoch
    averaging._swap_models(pl_module)
    try:
        yield
    finally:
        averaging._swap_models(pl_module)


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

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        else:
            # the module already holds the checkpoint's state_dict, the averaged weights to evaluate; an average left
            # over from an earlier fit would otherwise be swapped in for them at every validation epoch
            self._average_model = None
