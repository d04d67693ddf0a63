"""mode=predict for the event-to-video task: one video of reconstructed frames per event recording."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from evframe.data.folder import probe_file_size
from evframe.data.sequential import SequentialDataLoader
from evframe.io.paths import recording_name
from evframe.tasks.e2v.lightning_module import EventToVideoLightningModel
from evframe.tasks.e2v.video import reconstruction_frames
from evframe.utils.video import write_video


def write_e2v_videos(module: EventToVideoLightningModel, paths: Sequence[str], preprocess: Mapping, output_dir: str,
                     max_batches: int = 10_000, fps: float = 20.0) -> list[Path]:
    """Writes ``<output_dir>/<recording>_e2v.mp4`` (events | reconstruction) for every recording; returns the files.

    Args:
        module: the e2v module (weights loaded).
        paths: event recordings (any format ``evframe.io.open_events`` reads, with the sensor size in the header).
        preprocess: the ``preprocess`` config node (event_cube, delta_t, num_tbins, downsample, kwargs, channels).
    """
    if not paths:
        raise ValueError("mode=predict needs recordings: task.predict.paths=[rec1.dat,rec2.dat]")
    p = OmegaConf.to_container(preprocess, resolve=True) if isinstance(preprocess, DictConfig) else dict(preprocess)
    written = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"task.predict.paths: '{path}' does not exist")
        height, width = probe_file_size(path)
        loader = SequentialDataLoader([path], delta_t=int(p["delta_t"]), preprocess_function_name=str(p["name"]),
                                      array_dim=[int(p["num_tbins"]), int(p["channels"]), height, width],
                                      batch_size=1, preprocess_kwargs=dict(p.get("kwargs") or {}),
                                      downsample=int(p.get("downsample", 0)))
        frames = reconstruction_frames(module, loader, str(p["name"]), max_batches, max_streams=1, with_target=False)
        written.append(write_video(frames, Path(output_dir) / f"{recording_name(path)}_e2v.mp4", fps=fps))
    return written
