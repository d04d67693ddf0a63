"""The event-to-video task: intensity frames reconstructed from events by a recurrent U-Net trained on clips whose
events are simulated on the fly (clip sources, GPUEBSIM streaming, network, losses, metrics, callback)."""

from evframe.tasks.e2v.callbacks import EventToVideoCallback
from evframe.tasks.e2v.data_module import EventToVideoDataModule
from evframe.tasks.e2v.gpu_esim import GPUEBSIM, collect_target_images
from evframe.tasks.e2v.lightning_module import EventToVideoLightningModel
from evframe.tasks.e2v.network import EventToVideo, MergeSkip

__all__ = ["GPUEBSIM", "EventToVideo", "EventToVideoCallback", "EventToVideoDataModule", "EventToVideoLightningModel",
           "MergeSkip", "collect_target_images"]
