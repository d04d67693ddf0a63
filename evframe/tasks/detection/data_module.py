"""Data of the detection task: sequential loaders over a dataset folder with box labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from evframe.data.box_processing import create_class_lookup
from evframe.data.folder import split_files
from evframe.data.sequential import SequentialDataLoader
from evframe.data.streaming import StreamingDataLoader, streaming_loader_from_config
from evframe.tasks.detection.labels import checked_recordings, load_detection_boxes, resolve_classes


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


class DetectionDataModule(L.LightningDataModule):
    """Sequential loaders over ``dataset.root/{train,val,test}`` (``*.dat`` or ``*.h5`` recordings with
    ``<name>_bbox.npy`` beside them and ``label_map_dictionary.json`` at the root), as in Metavision's tutorial; or
    streaming loaders over lists of RAW / HDF5 event / DAT recordings (``dataset=raw_stream``: ``paths``,
    ``val_paths``, ``test_paths``, with ``dataset.label_map`` naming the label map).

    Before a split is first played, its box files are read once: recordings without labels are skipped, and boxes
    that the loader will drop or clip (zero or negative size, outside the frame) are counted in one warning; class
    ids missing from the label map are an error naming the file.

    Args:
        dataset: the ``dataset`` config node (root, label_map, height, width, batch_size, num_workers, generate...).
        preprocess: the ``preprocess`` config node (name, delta_t, num_tbins, downsample, kwargs, channels).
        wanted_classes: class names to train on (ids 1..C in this order); empty: all but ``"empty"``.
        min_box_diag_network: boxes with a smaller diagonal (network pixels, after downsampling) are dropped.
        labelling_delta_t: annotation period in us (0: a bin is labelled when it holds a box).
    """

    def __init__(self, dataset: Mapping, preprocess: Mapping, wanted_classes: Sequence[str] = (),
                 min_box_diag_network: float = 0, labelling_delta_t: int = 0) -> None:
        super().__init__()
        self.dataset_cfg = _plain(dataset)
        self.preprocess_cfg = _plain(preprocess)
        self.wanted_classes = list(wanted_classes or [])
        self.min_box_diag_network = float(min_box_diag_network)
        self.labelling_delta_t = int(labelling_delta_t or 0)
        self._loaders: dict[str, SequentialDataLoader] = {}
        self._checked: dict[str, list[Path]] = {}

    # ---- preparation
    def prepare_data(self) -> None:
        """Generates the synthetic dataset once (cached) when the dataset config asks for it."""
        ds = self.dataset_cfg
        if ds.get("generate"):
            from evframe.data.synthetic import ensure_dataset

            ensure_dataset(ds["root"], preset=ds.get("preset", "default"), seed=int(ds.get("seed", 0)))

    @property
    def label_map(self) -> Path:
        ds = self.dataset_cfg
        if ds.get("label_map"):
            return Path(ds["label_map"])
        if ds.get("paths"):
            raise ValueError("task=detection on a list of recordings (dataset.paths) needs "
                             "dataset.label_map=<path of label_map_dictionary.json>")
        return Path(ds["root"]) / "label_map_dictionary.json"

    @property
    def classes(self) -> list[str]:
        """Class names of ids 1..C."""
        preset = self.dataset_cfg.get("preset") if self.dataset_cfg.get("generate") else None
        return resolve_classes(self.label_map, self.wanted_classes, preset)

    @property
    def array_dim(self) -> list[int]:
        """``[num_tbins, channels, sensor_height, sensor_width]`` (Metavision convention: sensor size)."""
        p, ds = self.preprocess_cfg, self.dataset_cfg
        return [int(p["num_tbins"]), int(p["channels"]), int(ds["height"]), int(ds["width"])]

    def files(self, split: str) -> list[Path]:
        """Recordings of ``split`` that have box labels (checked once, see the class docstring)."""
        if split not in self._checked:
            from evframe.io import load_label_map

            recordings = split_files(self.dataset_cfg, split)
            self._checked[split] = checked_recordings(split, recordings, list(load_label_map(self.label_map)),
                                                      int(self.dataset_cfg["height"]), int(self.dataset_cfg["width"]))
        return self._checked[split]

    def load_labels(self) -> partial:
        """The loader's ``load_labels`` hook (picklable, for worker processes)."""
        lookup = create_class_lookup(self.label_map, self.wanted_classes)
        return partial(load_detection_boxes, class_lookup=lookup, min_box_diag_network=self.min_box_diag_network,
                       labelling_delta_t=self.labelling_delta_t)

    def make_loader(self, split: str, files: list[Path] | None = None, batch_size: int | None = None,
                    shuffle: bool | None = None,
                    num_workers: int | None = None) -> SequentialDataLoader | StreamingDataLoader:
        """A loader over ``split`` (or the given files) yielding box labels."""
        files = self.files(split) if files is None else files
        p, ds = self.preprocess_cfg, self.dataset_cfg
        if ds.get("loader") == "streaming":  # RAW / HDF5 events / DAT read front to back (dataset=raw_stream)
            return streaming_loader_from_config(
                files, p, ds, self.load_labels(), train=split == "train",
                trainer=self.trainer, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
        return SequentialDataLoader(
            files, delta_t=int(p["delta_t"]), preprocess_function_name=str(p["name"]), array_dim=self.array_dim,
            load_labels=self.load_labels(), batch_size=int(batch_size or ds["batch_size"]),
            num_workers=int(ds.get("num_workers", 0) if num_workers is None else num_workers),
            preprocess_kwargs=dict(p.get("kwargs") or {}), padding=True,
            shuffle=(split == "train") if shuffle is None else shuffle, seed=int(ds.get("seed", 0)),
            downsample=int(p.get("downsample", 0)), max_duration=ds.get("max_duration"),
            labelling_delta_t=self.labelling_delta_t,
            rank=self.trainer.global_rank if self.trainer is not None else 0,
            world_size=self.trainer.world_size if self.trainer is not None else 1,
        )

    def _loader(self, split: str) -> SequentialDataLoader:
        if split not in self._loaders:
            self._loaders[split] = self.make_loader(split)
        return self._loaders[split]

    # ---- Lightning hooks
    def train_dataloader(self) -> SequentialDataLoader:
        loader = self._loader("train")
        if self.trainer is not None:
            loader.set_epoch(self.trainer.current_epoch)
        return loader

    def val_dataloader(self) -> SequentialDataLoader:
        return self._loader("val")

    def test_dataloader(self) -> SequentialDataLoader:
        return self._loader("test")


__all__ = ["DetectionDataModule"]
