"""FlowCallback: the training curriculum on sequence length and periodic flow videos. LabelFreeMonitor: what the
checkpoints rank epochs by when the validation recordings have no flow labels."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from evframe.tasks.flow.lightning_module import LABEL_METRICS
from evframe.tasks.flow.video import flow_video_frames
from evframe.tasks.video_callback import PeriodicVideoCallback
from evframe.utils.video import log_video, write_video

log = logging.getLogger(__name__)


def curriculum_max_consecutive_batch(curriculum_param: float, epoch: int) -> int:
    """``int(p ** (epoch - 1))`` for 1-based ``epoch`` (at least 1): short sequences first, longer later."""
    return max(1, int(curriculum_param ** (epoch - 1)))


def _curriculum_for_epoch_index(curriculum_param: float, epoch_index: int) -> int:
    return curriculum_max_consecutive_batch(curriculum_param, epoch_index + 1)


class FlowCallback(PeriodicVideoCallback):
    """As Metavision's FlowCallback.

    Args:
        curriculum_param: ``p`` in ``max_consecutive_batch = int(p**(epoch-1))`` (epochs counted from 1); each
            training recording is cut into chunks of that many batches, so the recurrent memory is first trained on
            short sequences. 0 or None disables the curriculum.
        video_result_every_n_epochs: every n epochs, a video of flow arrows on validation recordings is written to
            ``<run dir>/videos/flow_epoch<k>.mp4`` and logged to W&B (0 disables), drawn with the weights validation
            scores (the average of ``callbacks.weight_averaging`` when it is on).
        mask_flow_by_input: draw arrows only where there are events.
        num_video_batches: validation batches rendered in each video.
    """

    def __init__(self, curriculum_param: float | None = 1.414, video_result_every_n_epochs: int = 2,
                 mask_flow_by_input: bool = True, num_video_batches: int = 20) -> None:
        super().__init__(video_result_every_n_epochs)
        self.curriculum_param = curriculum_param
        self.mask_flow_by_input = mask_flow_by_input
        self.num_video_batches = int(num_video_batches)

    def _apply_curriculum(self, trainer: L.Trainer, epoch_index: int) -> None:
        if not self.curriculum_param or trainer.datamodule is None:
            return
        trainer.datamodule.set_max_consecutive_batch(
            curriculum_max_consecutive_batch(self.curriculum_param, epoch_index + 1))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply_curriculum(trainer, trainer.current_epoch)
        if self.curriculum_param and hasattr(trainer.datamodule, "curriculum"):
            # the data module applies it when Lightning (re)loads the train loader, from the epoch counter, which
            # is restored by then when the run resumes from a checkpoint (here it still reads 0)
            trainer.datamodule.curriculum = partial(_curriculum_for_epoch_index, float(self.curriculum_param))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # set before Lightning reloads the train loader for the next epoch (it does so before epoch-start hooks)
        self._apply_curriculum(trainer, trainer.current_epoch + 1)
        super().on_train_epoch_end(trainer, pl_module)

    def write_demo_video(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Renders validation recordings with predicted flow; returns the video path (None without val data)."""
        datamodule = trainer.datamodule
        if datamodule is None:
            return None
        loader = datamodule.make_loader("val", batch_size=min(4, int(datamodule.dataset_cfg["batch_size"])),
                                        shuffle=False, num_workers=0)
        frames = flow_video_frames(pl_module, loader, str(datamodule.preprocess_cfg["name"]),
                                   self.num_video_batches, self.mask_flow_by_input)
        out_dir = Path(trainer.default_root_dir) / "videos"
        path = write_video(frames, out_dir / f"flow_epoch{trainer.current_epoch:03d}.mp4")
        log_video(trainer.loggers, "val/flow_video", path)
        return path


class LabelFreeMonitor(L.Callback):
    """Checkpoints of a run whose validation recordings have no flow labels rank epochs by a label-free metric.

    ``val/aee`` and the other :data:`~evframe.tasks.flow.lightning_module.LABEL_METRICS` are logged only from
    recordings with ``<name>_flow.h5`` beside them (``FlowDataModule.flow_label_files``). When no validation recording
    has one, every ``ModelCheckpoint`` monitoring one of them monitors ``fallback`` with ``fallback_mode`` instead,
    and the log says so once. The choice is made when fitting sets up, before a resumed run restores the checkpoint
    callbacks' state: Lightning files that state under the monitored name and mode, so the resumed run finds the
    best score of the run it continues (the same recordings give the same choice).

    Args:
        fallback: the metric to monitor instead (``val/loss``: the self-supervised loss on the validation recordings).
        fallback_mode: ``min`` or ``max``, the direction in which ``fallback`` improves.
    """

    def __init__(self, fallback: str = "val/loss", fallback_mode: str = "min") -> None:
        if fallback_mode not in ("min", "max"):
            raise ValueError(f"LabelFreeMonitor: fallback_mode must be 'min' or 'max', got {fallback_mode!r}")
        if not str(fallback).startswith("val/"):
            raise ValueError(f"LabelFreeMonitor: fallback must be a validation metric 'val/<name>', got {fallback!r}")
        self.fallback = str(fallback)
        self.fallback_mode = fallback_mode

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        label_files = getattr(trainer.datamodule, "flow_label_files", None)
        if stage != "fit" or label_files is None or label_files("val")[0]:
            return
        label_monitors = {f"val/{name}" for name in LABEL_METRICS}
        replaced = []
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor in label_monitors:
                replaced.append(f"{callback.monitor} ({callback.mode})")
                callback.monitor = self.fallback
                # what ModelCheckpoint sets from its mode at construction: the direction and the worst possible score
                callback.mode = self.fallback_mode
                callback.kth_value = torch.tensor(torch.inf if self.fallback_mode == "min" else -torch.inf)
        if replaced and trainer.is_global_zero:
            log.warning("no validation recording has flow labels (<name>_flow.h5 beside it), so %s cannot be "
                        "measured: the checkpoints keep the epoch with the %s %s instead (the value the run returns "
                        "as its optimized metric); label-free quality: val/fwl, test/fwl", ", ".join(replaced),
                        "lowest" if self.fallback_mode == "min" else "highest", self.fallback)
