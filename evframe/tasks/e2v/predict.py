"""mode=predict for the event-to-video task: one video of reconstructed frames per event recording."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evframe.io.paths import recording_name
from evframe.tasks.e2v.lightning_module import EventToVideoLightningModel
from evframe.tasks.e2v.video import reconstruction_frames
from evframe.tasks.prediction import recording_loaders
from evframe.utils.video import write_video


def write_e2v_videos(module: EventToVideoLightningModel, paths: Sequence[str], preprocess: Mapping, output_dir: str,
                     max_batches: int = 10_000, fps: float = 20.0) -> list[Path]:
    """Writes ``<output_dir>/<recording>_e2v.mp4`` (events | reconstruction) for every recording; returns the files.

    Args:
        module: the e2v module (weights loaded).
        paths: event recordings (any format ``evframe.io.open_events`` reads, with the sensor size in the header).
        preprocess: the ``preprocess`` config node (event_cube, delta_t, num_tbins, downsample, kwargs, channels).
    """
    written = []
    for path, loader in recording_loaders(paths, preprocess):
        frames = reconstruction_frames(module, loader, str(preprocess["name"]), max_batches, max_streams=1,
                                       with_target=False)
        written.append(write_video(frames, Path(output_dir) / f"{recording_name(path)}_e2v.mp4", fps=fps))
    return written
