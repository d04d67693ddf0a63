"""The flow task on recordings without flow labels: the checkpoint monitor and the returned metric fall back to a
label-free metric (also across a resume), a split with some labels missing is warned about, and validation / test
log the losses and the flow warp loss."""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from evframe.data.labels import load_flow, load_labels_stub
from evframe.io import EVENT_DTYPE, write_dat, write_flow_h5
from evframe.runner import returned_metric
from evframe.tasks.flow.callbacks import LabelFreeMonitor
from evframe.tasks.flow.data_module import FlowDataModule, load_flow_where_labelled
from evframe.utils.checkpoint import BestModelCheckpoint


# ----------------------------------------------------------------------------------------------- the monitor switch
def _fake_trainer(checkpoint: BestModelCheckpoint, labelled: bool) -> SimpleNamespace:
    files = (([Path("val/a.dat")], []) if labelled else ([], [Path("val/a.dat")]))
    return SimpleNamespace(checkpoint_callbacks=[checkpoint], is_global_zero=True,
                           datamodule=SimpleNamespace(flow_label_files=lambda split: files))


def test_without_validation_labels_the_checkpoint_monitors_the_fallback_in_its_direction(caplog) -> None:
    checkpoint = BestModelCheckpoint(monitor="val/aee", mode="min")
    with caplog.at_level(logging.WARNING):
        LabelFreeMonitor("val/fwl", "max").setup(_fake_trainer(checkpoint, labelled=False), None, "fit")
    assert (checkpoint.monitor, checkpoint.mode, float(checkpoint.kth_value)) == ("val/fwl", "max", -math.inf)
    # the state key Lightning files the callback's state under is the one of a checkpoint built for val/fwl, max
    assert checkpoint.state_key == BestModelCheckpoint(monitor="val/fwl", mode="max").state_key
    said = [r.getMessage() for r in caplog.records if "no validation recording has flow labels" in r.getMessage()]
    assert len(said) == 1 and "val/aee (min)" in said[0] and "highest val/fwl" in said[0]


def test_with_validation_labels_or_outside_fitting_nothing_changes() -> None:
    checkpoint = BestModelCheckpoint(monitor="val/aee", mode="min")
    LabelFreeMonitor().setup(_fake_trainer(checkpoint, labelled=True), None, "fit")
    LabelFreeMonitor().setup(_fake_trainer(checkpoint, labelled=False), None, "test")
    assert (checkpoint.monitor, checkpoint.mode) == ("val/aee", "min")
    other = BestModelCheckpoint(monitor="val/loss", mode="min")  # a metric that needs no labels stays
    LabelFreeMonitor("val/fwl", "max").setup(_fake_trainer(other, labelled=False), None, "fit")
    assert (other.monitor, other.mode) == ("val/loss", "min")


def test_a_bad_fallback_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="fallback_mode must be 'min' or 'max', got 'up'"):
        LabelFreeMonitor("val/loss", "up")
    with pytest.raises(ValueError, match="'val/<name>', got 'loss'"):
        LabelFreeMonitor("loss", "min")


class _ScriptedModule(L.LightningModule):
    """Logs ``val/loss`` = ``scores[epoch]`` (and never ``val/aee``)."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/loss", self.scores[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _UnlabelledData(L.LightningDataModule):
    def flow_label_files(self, split: str) -> tuple[list[Path], list[Path]]:
        return [], [Path(f"{split}/rec.raw")]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(2, 2), batch_size=2)


def _fit(run_dir: Path, scores: list[float], ckpt_path: Path | None = None) -> BestModelCheckpoint:
    best = BestModelCheckpoint(dirpath=run_dir, monitor="val/aee", mode="min", filename="epoch{epoch:03d}",
                               save_top_k=1, auto_insert_metric_name=False)
    last = L.pytorch.callbacks.ModelCheckpoint(dirpath=run_dir, filename="last", monitor=None,
                                               enable_version_counter=False)
    trainer = L.Trainer(max_epochs=len(scores), accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=run_dir,
                        callbacks=[best, last, LabelFreeMonitor("val/loss", "min")])
    trainer.fit(_ScriptedModule(scores), datamodule=_UnlabelledData(), ckpt_path=ckpt_path, weights_only=True)
    return best


def test_a_resumed_run_without_labels_keeps_the_best_score_of_the_run_it_continues(tmp_path: Path) -> None:
    first = _fit(tmp_path / "a", [0.5, 0.8])
    assert first.monitor == "val/loss" and float(first.best_model_score) == pytest.approx(0.5)
    # resumed into another run directory (ckpt_path=<file>): epoch 2 scores 0.9, worse than epoch 0's 0.5
    with pytest.warns(UserWarning, match="dirpath has changed"):
        resumed = _fit(tmp_path / "b", [0.5, 0.8, 0.9], ckpt_path=tmp_path / "a" / "last.ckpt")
    assert float(resumed.best_model_score) == pytest.approx(0.5)
    assert resumed.best_model_path == str(tmp_path / "a" / "epoch000.ckpt")


# ------------------------------------------------------------------------------------------ what the run returns
def _cfg(**keys: object) -> OmegaConf:
    return OmegaConf.create({"optimized_metric": "val/aee", "optimized_metric_mode": "min", **keys})


def test_the_returned_metric_falls_back_when_the_optimized_one_was_never_logged() -> None:
    unlabelled = {"best/val/loss": 0.7, "val/loss": 0.8, "val/fwl": 1.3}
    fallback = {"optimized_metric_fallback": "val/loss", "optimized_metric_fallback_mode": "min"}
    assert returned_metric(unlabelled, _cfg(**fallback)) == pytest.approx(0.7)
    assert returned_metric({"val/loss": 0.8}, _cfg(**fallback)) == pytest.approx(0.8)  # no checkpoint: last value
    # a fallback improving the other way is negated for the sweeper, which minimises val/aee
    maximised = {"optimized_metric_fallback": "val/fwl", "optimized_metric_fallback_mode": "max"}
    assert returned_metric(unlabelled, _cfg(**maximised)) == pytest.approx(-1.3)
    # labels present: the optimized metric itself; no fallback configured (other tasks): None
    assert returned_metric({**unlabelled, "best/val/aee": 0.4}, _cfg(**fallback)) == pytest.approx(0.4)
    assert returned_metric(unlabelled, _cfg()) is None
    assert returned_metric({"val/loss": float("nan")}, _cfg(**fallback)) is None


# ---------------------------------------------------------------------------------- splits with missing labels
SIZE = 16


def _recording(path: Path, with_flow: bool, start_us: int = 0) -> None:
    """A dot walking right across row 8 for 40 ms (one event per ms), and optionally its flow (+1 px/ms) at 10 ms."""
    events = np.zeros(40, dtype=EVENT_DTYPE)
    events["x"] = np.arange(40) % SIZE
    events["y"] = 8
    events["p"] = 1
    events["t"] = start_us + np.arange(40) * 1000
    write_dat(path, events, SIZE, SIZE, extra_header={"Date": "2024-01-01 00:00:00"})
    if with_flow:
        flow = np.zeros((4, 2, SIZE, SIZE), dtype=np.float32)
        flow[:, 0] = 1000.0  # px/s
        write_flow_h5(path.with_name(path.name.replace("_td.dat", "_flow.h5")), flow,
                      start_us + np.arange(4, dtype=np.int64) * 10_000)


def _datamodule(root: Path) -> FlowDataModule:
    dataset = {"root": str(root), "batch_size": 2, "num_workers": 0, "height": SIZE, "width": SIZE}
    preprocess = {"name": "event_cube", "delta_t": 10_000, "num_tbins": 2, "channels": 6, "downsample": 0,
                  "kwargs": {"num_utbins": 3, "split_polarity": True}}
    return FlowDataModule(dataset, preprocess)


def test_a_validation_split_with_some_labels_missing_warns_once_naming_them_and_scores_the_others(
        tmp_path: Path, caplog) -> None:
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    _recording(tmp_path / "train" / "t_td.dat", with_flow=False)
    _recording(tmp_path / "val" / "a_td.dat", with_flow=True)
    _recording(tmp_path / "val" / "b_td.dat", with_flow=False)
    dm = _datamodule(tmp_path)
    assert dm.flow_label_files("val") == ([tmp_path / "val" / "a_td.dat"], [tmp_path / "val" / "b_td.dat"])
    with caplog.at_level(logging.WARNING):
        loader = dm.make_loader("val", shuffle=False)
        dm.make_loader("val")  # the video callback's loader: said once
    said = [r.getMessage() for r in caplog.records if "have no flow labels" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("1 of 2 val recordings have no flow labels")
    assert str(tmp_path / "val" / "b_td.dat") in said[0] and "a_td.dat" not in said[0]
    assert loader.dataset.load_labels is load_flow_where_labelled
    labelled = {}
    for batch in loader:
        for b, (md, _start, _duration) in enumerate(batch["video_infos"]):
            if not md.is_padding():
                labelled.setdefault(Path(md.path).name, []).extend(bool(v) for v in batch["frame_is_labeled"][:, b])
    assert labelled == {"a_td.dat": [True] * 4, "b_td.dat": [False] * 4}  # 40 ms = 2 batches of 2 bins of 10 ms


def test_splits_with_all_or_no_labels_use_one_hook_and_say_nothing(tmp_path: Path, caplog) -> None:
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        _recording(tmp_path / split / "a_td.dat", with_flow=split == "val")
    dm = _datamodule(tmp_path)
    with caplog.at_level(logging.WARNING):
        hooks = {split: dm.make_loader(split).dataset.load_labels for split in ("train", "val", "test")}
    assert hooks == {"train": load_labels_stub, "val": load_flow, "test": load_labels_stub}
    assert not [r for r in caplog.records if "flow labels" in r.getMessage()]


def test_the_loader_plays_a_recording_from_its_first_event(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    _recording(tmp_path / "val" / "late_td.dat", with_flow=False, start_us=1_234_567)
    loader = _datamodule(tmp_path).make_loader("val")
    starts = [int(batch["video_infos"][0][1]) for batch in loader if not batch["video_infos"][0][0].is_padding()]
    # first event at 1 234 567 us -> from 1 230 000 (rounded down to 10 ms), 2 batches of 20 ms reach 1 273 566
    assert starts == [1_230_000, 1_250_000, 1_270_000]


# ----------------------------------------------------------------------------- what validation and test log
def _flow_module() -> L.LightningModule:
    from evframe.tasks.flow.feature_extractors import eminet
    from evframe.tasks.flow.lightning_module import FlowLightningModule
    from evframe.tasks.flow.losses import FlowLoss

    torch.manual_seed(0)
    loss = FlowLoss({"data": 1.0, "bw_deblur": 1.0, "smoothness": 0.1}, channels_per_micro_bin=2)
    return FlowLightningModule(eminet(6, base=4, scales=2), loss, partial(torch.optim.SGD, lr=0.1))


def _batch(labels: bool) -> dict:
    inputs = (torch.rand(2, 2, 6, 16, 16) < 0.1).float()
    gt = torch.ones(2, 16, 16)
    return {"inputs": inputs, "mask_keep_memory": torch.zeros(2),
            "labels": [[gt if labels else None, None], [None, None]],
            "frame_is_labeled": torch.tensor([[labels, False], [False, False]])}


class _Batches:
    """An iterable of ready-made batches (Lightning would take a plain list for several loaders)."""

    def __init__(self, *batches: dict) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def test_test_logs_the_losses_and_the_flow_warp_loss_with_or_without_labels(tmp_path: Path) -> None:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    unlabelled = trainer.test(_flow_module(), dataloaders=_Batches(_batch(labels=False)), verbose=False)[0]
    assert {"test/loss", "test/data", "test/bw_deblur", "test/smoothness", "test/fwl"} <= set(unlabelled)
    assert "test/aee" not in unlabelled
    assert math.isfinite(unlabelled["test/fwl"]) and math.isfinite(unlabelled["test/loss"])
    labelled = trainer.test(_flow_module(), dataloaders=_Batches(_batch(labels=True)), verbose=False)[0]
    assert {"test/aee", "test/aee_zero", "test/aee_ratio", "test/fwl", "test/loss"} <= set(labelled)
    assert labelled["test/aee_zero"] == pytest.approx(math.sqrt(2))  # |(1, 1)| on the pixels with events


class _LabelledSplitWithoutLabelledBins(L.LightningDataModule):
    """A test split whose recordings have flow labels, none of them within the batches played."""

    def flow_label_files(self, split: str) -> tuple[list[Path], list[Path]]:
        return [Path(f"{split}/rec_td.dat")], []

    def test_dataloader(self) -> _Batches:
        return _Batches(_batch(labels=False))


def test_a_labelled_split_that_reached_no_labelled_bin_logs_nan_label_metrics(tmp_path: Path, caplog) -> None:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        logged = trainer.test(_flow_module(), datamodule=_LabelledSplitWithoutLabelledBins(), verbose=False)[0]
    assert math.isnan(logged["test/aee"]) and math.isnan(logged["test/aee_ratio"])  # found by a monitor, never best
    assert math.isfinite(logged["test/fwl"])
    assert any("no labelled bin was evaluated" in r.getMessage() for r in caplog.records)


def test_weighted_means_weigh_each_batch_by_its_streams() -> None:
    from evframe.tasks.flow.metrics import WeightedMeans

    means = WeightedMeans(["data", "loss"])
    means.update({"data": torch.tensor(1.0), "loss": torch.tensor(2.0)}, 3)
    means.update({"data": torch.tensor(5.0), "loss": torch.tensor(4.0)}, 1)
    out = means.compute()
    assert float(out["data"]) == pytest.approx((3 * 1 + 5) / 4) and float(out["loss"]) == pytest.approx(10 / 4)
    with pytest.raises(KeyError, match="smoothness"):
        means.update({"smoothness": torch.tensor(1.0)}, 1)
    means.reset()
    assert math.isnan(float(means.compute()["data"]))
