"""Data of the event-to-video task: clips simulated on the fly for training, clips and recordings for evaluation.

* train: :class:`~evframe.tasks.e2v.gpu_esim.GPUEBSIM` over new random clips every epoch, simulator parameters
  randomised per clip (``randomize_noises``);
* val: fixed held-out clips (``clips``) and, optionally, the synthetic dataset's validation recordings;
* test: fixed held-out clips, the synthetic dataset's test recordings (their events and ground-truth frames) and
  every folder of real frames in ``eval.frame_folders`` (events simulated from the frames).

Every evaluation source is one dataloader; :meth:`EventToVideoDataModule.source_names` gives their names in order.
Clips are rendered directly at ``dataset.height x dataset.width`` (no downsampling); recordings are read at their
sensor size reduced by ``preprocess.downsample``. The network is fully convolutional, so both sizes may differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from evframe.data.folder import list_recordings, probe_file_size
from evframe.data.sequential import SequentialDataLoader
from evframe.tasks.e2v.clips import ClipDataset, ClipTiming, collate_clips
from evframe.tasks.e2v.gpu_esim import GPUEBSIM, SimulatorConfig
from evframe.tasks.e2v.recordings import frame_folder_recording, frames_path, load_frames

STAGES = ("val", "test")


def _plain(node: Any) -> dict:
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


class EventToVideoDataModule(L.LightningDataModule):
    """Clips simulated on the training device, and evaluation recordings with ground-truth frames.

    Args:
        dataset: the ``dataset`` config node (``conf/dataset/clips.yaml``): clip size, batch size, workers, clip
            counts, ``batches_per_clip``, ``frames_per_bin``, ``randomize_noises``, ``source``, ``simulator``, ``eval``.
        preprocess: the ``preprocess`` config node: ``event_cube`` with ``split_polarity`` false (``num_utbins`` is the
            event volume depth), ``delta_t``, ``num_tbins`` (bins per batch), ``downsample`` (recordings only).
        device: where clips are simulated; None: the trainer's device (CPU when there is no trainer).
    """

    def __init__(self, dataset: Mapping, preprocess: Mapping, device: str | None = None) -> None:
        super().__init__()
        self.dataset_cfg = _plain(dataset)
        self.preprocess_cfg = _plain(preprocess)
        self.device_override = device
        p = self.preprocess_cfg
        if p.get("name") != "event_cube":
            raise ValueError(f"task=e2v builds event volumes on the training device as 'event_cube'; "
                             f"preprocess '{p.get('name')}' is not supported (use preprocess=event_cube)")
        if "clips_per_epoch" not in self.dataset_cfg:
            raise ValueError(f"task=e2v trains on clips simulated on the fly (dataset=clips); dataset "
                             f"'{self.dataset_cfg.get('name')}' has no clips. Recordings with true frames are "
                             f"evaluated through dataset.eval (frame_folders, the synthetic dataset); any event "
                             f"recording (DAT, RAW, HDF5) is reconstructed by mode=predict task.predict.paths=[...]")
        kwargs = dict(p.get("kwargs") or {})
        self.depth = int(kwargs.get("num_utbins", 3))
        self.split_polarity = bool(kwargs.get("split_polarity", True))
        self.max_incr_per_pixel = float(kwargs.get("max_incr_per_pixel", 5.0))
        ds = self.dataset_cfg
        self.batch_times = int(p["num_tbins"])
        self.timing = ClipTiming(int(ds["batches_per_clip"]) * self.batch_times, int(p["delta_t"]),
                                 int(ds.get("frames_per_bin", 4)))
        self.simulator = SimulatorConfig.from_dict(ds.get("simulator"))
        self.eval_cfg = dict(ds.get("eval") or {})
        self._recordings: dict[str, dict[str, list[Path]]] = {stage: {} for stage in STAGES}
        self._loaders: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------ preparation
    def prepare_data(self) -> None:
        """Generates the synthetic dataset (cached) and converts frame folders to recordings (cached)."""
        synthetic = self.eval_cfg.get("synthetic")
        if synthetic and synthetic.get("generate"):
            from evframe.data.synthetic import ensure_dataset

            ensure_dataset(synthetic["root"], preset=synthetic.get("preset", "default"),
                           seed=int(synthetic.get("seed", 0)))
        for folder in self.eval_cfg.get("frame_folders") or []:
            self._frame_folder(folder)

    def _frame_folder(self, folder: str) -> Path:
        return frame_folder_recording(folder, self.eval_cfg.get("cache_dir") or Path(folder).parent / "e2v_cache",
                                      self._folder_simulator(), self.eval_cfg.get("frame_folders_fps"),
                                      int(self.dataset_cfg.get("seed", 0)))

    def _folder_simulator(self) -> dict:
        s = self.simulator
        return {"contrast_threshold_pos": s.contrast_threshold_pos, "contrast_threshold_neg": s.contrast_threshold_neg,
                "threshold_sigma": s.threshold_sigma, "refractory_period_us": s.refractory_period_us,
                "cutoff_hz": s.cutoff_hz, "leak_rate_hz": s.leak_rate_hz, "shot_noise_rate_hz": s.shot_noise_rate_hz}

    def setup(self, stage: str | None = None) -> None:
        """Lists the evaluation recordings of every source."""
        synthetic = self.eval_cfg.get("synthetic")
        max_rec = (synthetic or {}).get("max_recordings")
        for split in STAGES:
            sources: dict[str, list[Path]] = {}
            if synthetic and synthetic.get(split, split == "test"):
                files = [f for f in list_recordings(synthetic["root"], split, max_rec) if frames_path(f).is_file()]
                if not files:
                    raise FileNotFoundError(f"{synthetic['root']}/{split}: no recording with ground-truth frames "
                                            f"(*{'_frames.h5'} beside the events)")
                sources["synthetic"] = files
            if split == "test":
                for folder in self.eval_cfg.get("frame_folders") or []:
                    sources[f"frames_{Path(folder).expanduser().resolve().name}"] = [self._frame_folder(folder)]
            self._recordings[split] = sources

    # ------------------------------------------------------------------------------------------------------ loaders
    @property
    def device(self) -> torch.device:
        if self.device_override:
            return torch.device(self.device_override)
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def clip_loader(self, split: str, batch_size: int | None = None, num_workers: int | None = None) -> GPUEBSIM:
        """GPUEBSIM over the clips of ``split`` (train: new clips every epoch; val/test: fixed ones)."""
        ds = self.dataset_cfg
        counts = {"train": ds["clips_per_epoch"], "val": ds["val_clips"], "test": ds["test_clips"]}
        seed = int(ds.get("seed", 0))
        # distinct seeds per split: evaluation clips never coincide with training clips. Under DDP every process
        # trains on clips of its own (clips_per_epoch each); evaluation clips are the same on every rank, so the
        # metrics reduced over ranks equal those of one process
        rank = self.trainer.global_rank if self.trainer is not None else 0
        split_seed = {"train": seed + 3_000_017 * rank, "val": seed + 1_000_003, "test": seed + 2_000_003}[split]
        batch_size = int(batch_size or ds["batch_size"])
        clips = ClipDataset(int(ds["height"]), int(ds["width"]), self.timing, max(int(counts[split]), batch_size),
                            ds.get("source"), seed=split_seed, vary_with_epoch=split == "train")
        workers = int(ds.get("num_workers", 0) if num_workers is None else num_workers)
        device = self.device
        # not persistent: workers copy the clip dataset when an epoch starts, after GPUEBSIM has set its epoch.
        # (No OpenCV thread setting in the workers: cv2.setNumThreads in a forked child deadlocks once the parent
        # has used OpenCV's thread pool, e.g. for the callback's video.)
        loader = DataLoader(clips, batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_clips, drop_last=True, pin_memory=device.type == "cuda")
        return GPUEBSIM(loader, self.simulator, self.batch_times, self.depth,
                        randomize_noises=bool(ds.get("randomize_noises", True)) and split == "train", device=device,
                        max_incr_per_pixel=self.max_incr_per_pixel, split_polarity=self.split_polarity,
                        seed=split_seed, vary_with_epoch=split == "train")

    def recording_loader(self, files: list[Path], batch_size: int | None = None) -> SequentialDataLoader:
        """A sequential loader over recordings of one sensor size, targets read by :func:`load_frames`."""
        p, ds = self.preprocess_cfg, self.dataset_cfg
        height, width = probe_file_size(files[0])
        max_duration = (self.eval_cfg.get("synthetic") or {}).get("max_duration")
        return SequentialDataLoader(
            files, delta_t=int(p["delta_t"]), preprocess_function_name="event_cube",
            array_dim=[self.batch_times, int(p["channels"]), height, width], load_labels=partial(load_frames),
            batch_size=int(batch_size or min(len(files), int(ds["batch_size"]))), num_workers=0,
            preprocess_kwargs=dict(p.get("kwargs") or {}), padding=True, shuffle=False,
            downsample=int(p.get("downsample", 0)), max_duration=max_duration)

    def source_names(self, stage: str) -> list[str]:
        """Names of the evaluation dataloaders of ``stage`` ("val" or "test"), in order; "clips" first."""
        return ["clips", *self._recordings.get(stage, {})]

    def _eval_loaders(self, stage: str) -> list[Any]:
        if stage not in self._loaders:
            loaders = [self.clip_loader(stage)]
            for files in self._recordings[stage].values():
                loaders.append(self.recording_loader(files))
            self._loaders[stage] = loaders
        return self._loaders[stage]

    def train_dataloader(self) -> GPUEBSIM:
        loader = self._loaders.get("train") or self.clip_loader("train")
        self._loaders["train"] = loader
        if self.trainer is not None:
            loader.set_epoch(self.trainer.current_epoch)
        return loader

    def val_dataloader(self) -> list[Any]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[Any]:
        return self._eval_loaders("test")
