"""mode=predict for the detection task: one video of predicted boxes per recording (ground truth drawn too when a
``*_bbox.npy`` file lies beside the recording)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evframe.data.labels import load_labels_stub
from evframe.io.paths import label_path, recording_name
from evframe.tasks.detection.labels import load_detection_boxes
from evframe.tasks.detection.lightning_module import DetectionLightningModule
from evframe.tasks.detection.viz import detection_video_frames
from evframe.tasks.prediction import recording_loaders
from evframe.utils.video import write_video


def write_detection_videos(module: DetectionLightningModule, paths: Sequence[str], preprocess: Mapping,
                           output_dir: str, score_thresh: float = 0.4, max_batches: int = 10_000) -> list[Path]:
    """Writes ``<output_dir>/<recording>_detections.mp4`` for every recording in ``paths``; returns the files.

    Args:
        module: the detection module (weights already loaded).
        paths: event recordings or precomputed tensor files.
        preprocess: the ``preprocess`` config node (name, delta_t, num_tbins, downsample, kwargs, channels).
        score_thresh: boxes drawn above this score.
    """
    def labels(path: str):
        # ground truth is drawn as it is stored (class ids are not remapped: only the boxes are shown)
        return load_detection_boxes if label_path(path, "_bbox.npy").is_file() else load_labels_stub

    written = []
    for path, loader in recording_loaders(paths, preprocess, labels):
        frames = detection_video_frames(module, loader, str(preprocess["name"]), max_batches, score_thresh,
                                        module.nms_thresh)
        written.append(write_video(frames, Path(output_dir) / f"{recording_name(path)}_detections.mp4"))
    return written


__all__ = ["write_detection_videos"]
