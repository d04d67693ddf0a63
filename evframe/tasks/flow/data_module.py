"""Data for the flow task: unlabeled training streams, validation and test streams with dense flow labels where the
recordings have them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from evframe.data.folder import split_files
from evframe.data.labels import flow_path, load_flow, load_labels_stub
from evframe.data.metadata import FileMetadata
from evframe.data.sequential import SequentialDataLoader
from evframe.data.streaming import streaming_loader_from_config
from evframe.io.paths import label_path

log = logging.getLogger(__name__)


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def load_flow_where_labelled(metadata: FileMetadata, start_time: int, duration: int,
                             tensor: torch.Tensor) -> tuple[list[torch.Tensor | None], np.ndarray]:
    """``load_labels`` hook of a split where only some recordings have flow labels: :func:`load_flow` for a recording
    with ``<name>_flow.h5`` beside it, :func:`load_labels_stub` (no bin labelled) for one without."""
    if flow_path(metadata).is_file():
        return load_flow(metadata, start_time, duration, tensor)
    return load_labels_stub(metadata, start_time, duration, tensor)


class FlowDataModule(L.LightningDataModule):
    """Sequential loaders over ``dataset.root/{train,val,test}``, each recording played from its first event
    (rounded down to ``delta_t``).

    Training is self-supervised (no labels read). Validation and test read the dense flow of ``<name>_flow.h5`` beside
    each recording that has one, so AEE can be measured on those (:meth:`flow_label_files`); the losses and the
    label-free flow warp loss are measured on every recording. A split where some recordings have labels and others
    not is warned about once, counting and naming those without.

    Args:
        dataset: the ``dataset`` config node (root, batch_size, num_workers, height, width, generate, preset...).
        preprocess: the ``preprocess`` config node (name, delta_t, num_tbins, downsample, kwargs, channels).
        train_delta_t_scales: speed augmentation of the training split: every epoch each training recording plays
            with bins of ``delta_t * s``, ``s`` drawn from this list, e.g. ``[0.5, 1.0]`` (half the recordings move
            half as many pixels per bin); see :func:`~evframe.data.sequential.rescale_delta_t`. None: no
            augmentation. Validation and test always play at ``delta_t``.
    """

    def __init__(self, dataset: Mapping, preprocess: Mapping,
                 train_delta_t_scales: list[float] | None = None) -> None:
        super().__init__()
        self.dataset_cfg = _plain(dataset)
        self.preprocess_cfg = _plain(preprocess)
        self.train_delta_t_scales = None if train_delta_t_scales is None else [float(s) for s in train_delta_t_scales]
        self.max_consecutive_batch: int | None = None
        #: ``epoch (0-based) -> max_consecutive_batch`` of the training curriculum (set by FlowCallback), or None
        self.curriculum: Callable[[int], int] | None = None
        self._loaders: dict[str, SequentialDataLoader] = {}
        self._warned_unlabelled: set[str] = set()

    # ---- preparation
    def prepare_data(self) -> None:
        """Generates the synthetic dataset once (cached) when the dataset config asks for it."""
        ds = self.dataset_cfg
        if ds.get("generate"):
            from evframe.data.synthetic import ensure_dataset

            ensure_dataset(ds["root"], preset=ds.get("preset", "default"), seed=int(ds.get("seed", 0)))

    @property
    def array_dim(self) -> list[int]:
        """``[num_tbins, channels, sensor_height, sensor_width]`` (Metavision convention: sensor size)."""
        p, ds = self.preprocess_cfg, self.dataset_cfg
        return [int(p["num_tbins"]), int(p["channels"]), int(ds["height"]), int(ds["width"])]

    def files(self, split: str) -> list[Path]:
        return split_files(self.dataset_cfg, split)

    def flow_label_files(self, split: str, files: list[Path] | None = None) -> tuple[list[Path], list[Path]]:
        """``(with, without)``: the recordings of ``split`` (or ``files``) with ``<name>_flow.h5`` beside them, and
        those without."""
        files = self.files(split) if files is None else files
        labelled = [Path(f) for f in files if label_path(f, "_flow.h5").is_file()]
        return labelled, [Path(f) for f in files if Path(f) not in labelled]

    def _labels_hook(self, split: str, files: list[Path]) -> Callable[..., Any]:
        """The ``load_labels`` hook of a split: none for training; flow labels where recordings have them."""
        if split == "train":
            return load_labels_stub
        labelled, unlabelled = self.flow_label_files(split, files)
        if not labelled:
            return load_labels_stub
        if not unlabelled:
            return load_flow
        primary = self.trainer is None or self.trainer.is_global_zero
        if split not in self._warned_unlabelled and primary:
            self._warned_unlabelled.add(split)
            log.warning("%d of %d %s recordings have no flow labels (<name>_flow.h5 beside the recording), so %s/aee "
                        "covers the other %d only: %s", len(unlabelled), len(files), split, split, len(labelled),
                        ", ".join(str(f) for f in unlabelled))
        return load_flow_where_labelled

    def make_loader(self, split: str, files: list[Path] | None = None, batch_size: int | None = None,
                    shuffle: bool | None = None, num_workers: int | None = None) -> SequentialDataLoader:
        """A loader over ``split`` (or the given files). Flow labels are read where ``*_flow.h5`` files exist."""
        files = self.files(split) if files is None else files
        p, ds = self.preprocess_cfg, self.dataset_cfg
        labels = self._labels_hook(split, files)
        if ds.get("loader") == "streaming":  # RAW / HDF5 events / DAT read front to back (dataset=raw_stream)
            if split == "train" and self.train_delta_t_scales is not None:
                raise ValueError("task.datamodule.train_delta_t_scales needs the sequential loader; the streaming "
                                 "loader (dataset.loader=streaming) plays every recording at preprocess.delta_t")
            return streaming_loader_from_config(
                files, p, ds, labels, train=split == "train",
                trainer=self.trainer, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
        return SequentialDataLoader(
            files, delta_t=int(p["delta_t"]), preprocess_function_name=str(p["name"]), array_dim=self.array_dim,
            load_labels=labels,
            batch_size=int(batch_size or ds["batch_size"]),
            num_workers=int(ds.get("num_workers", 0) if num_workers is None else num_workers),
            preprocess_kwargs=dict(p.get("kwargs") or {}), padding=True,
            shuffle=(split == "train") if shuffle is None else shuffle, seed=int(ds.get("seed", 0)),
            max_consecutive_batch=self.max_consecutive_batch if split == "train" else None,
            downsample=int(p.get("downsample", 0)), max_duration=ds.get("max_duration"),
            start_ts=None,  # each recording from its first event: a camera's RAW file rarely starts at 0
            rank=self.trainer.global_rank if self.trainer is not None else 0,
            world_size=self.trainer.world_size if self.trainer is not None else 1,
            delta_t_scales=self.train_delta_t_scales if split == "train" else None,
        )

    def _loader(self, split: str) -> SequentialDataLoader:
        if split not in self._loaders:
            self._loaders[split] = self.make_loader(split)
        return self._loaders[split]

    # ---- Lightning hooks
    def train_dataloader(self) -> SequentialDataLoader:
        # Lightning reloads the train loader every epoch (reload_dataloaders_every_n_epochs=1) *before* the epoch
        # hooks run, so the epoch's shuffling and curriculum are applied here, before its length is taken.
        if self.trainer is not None and self.curriculum is not None:
            # from the epoch counter, which is also right when a run resumes from a checkpoint (FlowCallback's
            # on_fit_start runs before Lightning restores the counter)
            self.set_max_consecutive_batch(self.curriculum(self.trainer.current_epoch))
        loader = self._loader("train")
        if self.trainer is not None:
            loader.set_epoch(self.trainer.current_epoch)
        return loader

    def val_dataloader(self) -> SequentialDataLoader:
        return self._loader("val")

    def test_dataloader(self) -> SequentialDataLoader:
        return self._loader("test")

    # ---- used by FlowCallback and the module
    def set_max_consecutive_batch(self, value: int) -> None:
        """Curriculum: cut training recordings into chunks of at most ``value`` batches from the next epoch on."""
        self.max_consecutive_batch = int(value)
        if "train" in self._loaders:
            self._loaders["train"].set_max_consecutive_batch(int(value))
