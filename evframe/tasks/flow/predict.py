"""mode=predict for the flow task: one video of predicted flow per recording."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evframe.io.paths import recording_name
from evframe.tasks.flow.lightning_module import FlowLightningModule
from evframe.tasks.flow.video import flow_video_frames
from evframe.tasks.prediction import recording_loaders
from evframe.utils.video import write_video


def write_flow_videos(module: FlowLightningModule, paths: Sequence[str], preprocess: Mapping,
                      output_dir: str, max_batches: int = 10_000) -> list[Path]:
    """Writes ``<output_dir>/<recording>_flow.mp4`` for every recording in ``paths``; returns the files.

    Args:
        module: the flow module (weights already loaded).
        paths: event recordings or precomputed tensor files (sensor size read from each file).
        preprocess: the ``preprocess`` config node (name, delta_t, num_tbins, downsample, kwargs, channels).
    """
    written = []
    for path, loader in recording_loaders(paths, preprocess):
        frames = flow_video_frames(module, loader, str(preprocess["name"]), max_batches)
        written.append(write_video(frames, Path(output_dir) / f"{recording_name(path)}_flow.mp4"))
    return written
