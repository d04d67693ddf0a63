"""mode=predict for the flow task: one video of predicted flow per recording."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from evframe.data.sequential import SequentialDataLoader
from evframe.io.paths import recording_name
from evframe.tasks.flow.lightning_module import FlowLightningModule
from evframe.tasks.flow.video import flow_video_frames
from evframe.utils.video import write_video


def write_flow_videos(module: FlowLightningModule, paths: Sequence[str], preprocess: Mapping,
                      output_dir: str, height: int | None = None, width: int | None = None,
                      max_batches: int = 10_000) -> list[Path]:
    """Writes ``<output_dir>/<recording>_flow.mp4`` for every recording in ``paths``; returns the files.

    Args:
        module: the flow module (weights already loaded).
        paths: event recordings or precomputed tensor files.
        preprocess: the ``preprocess`` config node (name, delta_t, num_tbins, downsample, kwargs, channels, and
            the sensor ``height``/``width`` before downsampling read from the recording when not given).
    """
    if not paths:
        raise ValueError("mode=predict needs recordings: task.predict.paths=[rec1.dat,rec2.dat]")
    p = OmegaConf.to_container(preprocess, resolve=True) if isinstance(preprocess, DictConfig) else dict(preprocess)
    written = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"task.predict.paths: '{path}' does not exist")
        if height is None or width is None:
            from evframe.data.folder import probe_file_size

            h, w = probe_file_size(path)
        else:
            h, w = height, width
        loader = SequentialDataLoader([path], delta_t=int(p["delta_t"]), preprocess_function_name=str(p["name"]),
                                      array_dim=[int(p["num_tbins"]), int(p["channels"]), h, w], batch_size=1,
                                      preprocess_kwargs=dict(p.get("kwargs") or {}),
                                      downsample=int(p.get("downsample", 0)))
        frames = flow_video_frames(module, loader, str(p["name"]), max_batches)
        written.append(write_video(frames, Path(output_dir) / f"{recording_name(path)}_flow.mp4"))
    return written
