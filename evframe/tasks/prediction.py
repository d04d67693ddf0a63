"""What the tasks' ``mode=predict`` functions share: one sequential loader per recording given by the user, playing it
from where it starts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evframe.data.labels import load_labels_stub
from evframe.data.sequential import SequentialDataLoader


def recording_loaders(paths: Sequence[str], preprocess: Mapping,
                      load_labels: Callable[[str], Any] | None = None) -> Iterator[tuple[str, SequentialDataLoader]]:
    """``(path, loader)`` for every recording of ``task.predict.paths``, in order: a batch-size-1
    :class:`SequentialDataLoader` that plays the whole recording, from its first event rounded down to ``delta_t``
    (cameras timestamp from their own start; a tensor file from its first tensor) to its last, with the run's
    ``preprocess`` (name, delta_t, num_tbins, channels, kwargs, downsample), at the sensor size read from the file.

    Args:
        paths: event recordings (any format ``evframe.io.open_events`` reads) or precomputed tensor files.
        preprocess: the ``preprocess`` config node.
        load_labels: ``path -> load_labels hook`` for the recording (None: no labels).

    Raises:
        ValueError: no path given; FileNotFoundError: a path that does not exist (checked before it is played).
    """
    from evframe.data.folder import probe_file_size

    if not paths:
        raise ValueError("mode=predict needs recordings: task.predict.paths=[rec1_td.dat,rec2.raw]")
    p = OmegaConf.to_container(preprocess, resolve=True) if isinstance(preprocess, DictConfig) else dict(preprocess)
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"task.predict.paths: '{path}' does not exist")
        height, width = probe_file_size(path)
        hook = load_labels(path) if load_labels is not None else load_labels_stub
        yield path, SequentialDataLoader(
            [path], delta_t=int(p["delta_t"]), preprocess_function_name=str(p["name"]),
            array_dim=[int(p["num_tbins"]), int(p["channels"]), height, width], load_labels=hook, batch_size=1,
            preprocess_kwargs=dict(p.get("kwargs") or {}), downsample=int(p.get("downsample", 0)),
            start_ts=None)


__all__ = ["recording_loaders"]
