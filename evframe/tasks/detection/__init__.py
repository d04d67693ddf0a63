"""The detection task: recurrent single-stage detector, anchors, losses, data, COCO evaluation, export."""

from evframe.tasks.detection.anchors import PSEE_ANCHORS, AnchorLayer, Anchors
from evframe.tasks.detection.callbacks import DetectionCallback
from evframe.tasks.detection.data_module import DetectionDataModule
from evframe.tasks.detection.feature_extractors import Vanilla, Vanilla_VGG, Vanilla_VGGRU
from evframe.tasks.detection.lightning_module import DetectionLightningModule
from evframe.tasks.detection.losses import DetectionLoss
from evframe.tasks.detection.rpn import BoxHead
from evframe.tasks.detection.single_stage_detector import SingleStageDetector

__all__ = ["PSEE_ANCHORS", "AnchorLayer", "Anchors", "BoxHead", "DetectionCallback", "DetectionDataModule",
           "DetectionLightningModule", "DetectionLoss", "SingleStageDetector", "Vanilla", "Vanilla_VGG",
           "Vanilla_VGGRU"]
