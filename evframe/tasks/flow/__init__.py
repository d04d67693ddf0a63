"""The flow task: self-supervised optical flow from events (models, losses, data, callback, evaluation)."""

from evframe.tasks.flow.callbacks import FlowCallback, LabelFreeMonitor
from evframe.tasks.flow.data_module import FlowDataModule
from evframe.tasks.flow.lightning_module import FlowLightningModule

__all__ = ["FlowCallback", "FlowDataModule", "FlowLightningModule", "LabelFreeMonitor"]
