"""Flow videos show what is evaluated (the averaged weights while training averages them), and mode=predict plays a
recording from its first event, not from t=0."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from evframe.io import EVENT_DTYPE, write_dat
from evframe.tasks.flow import callbacks as flow_callbacks
from evframe.tasks.flow import predict as flow_predict
from evframe.tasks.flow.callbacks import FlowCallback
from evframe.tasks.flow.lightning_module import FlowLightningModule
from evframe.tasks.flow.losses import FlowLoss
from evframe.tasks.flow.video import flow_video_frames
from evframe.tasks.prediction import recording_loaders
from evframe.utils.weight_averaging import EMAWeightAveraging


class _ConstantFlow(nn.Module):
    """Predicts the same flow ``(v, 0)`` everywhere; ``v`` is its only weight."""

    def __init__(self) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.zeros(()))

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        t, b, _, h, w = inputs.shape
        flow = inputs.new_zeros(t, b, 2, h, w)
        flow[:, :, 0] = self.v
        return [flow]


def _module() -> FlowLightningModule:
    return FlowLightningModule(_ConstantFlow(), FlowLoss({"data": 1.0}), partial(torch.optim.SGD, lr=0.1))


def _batches() -> list[dict]:
    inputs = torch.zeros(2, 1, 6, 32, 32)
    inputs[:, :, 1, 4:28, 4:28] = 1.0  # events everywhere in the middle: arrows are drawn there
    return [{"inputs": inputs, "mask_keep_memory": torch.zeros(1)}]


def test_the_video_during_training_shows_the_averaged_weights(tmp_path: Path, monkeypatch) -> None:
    module = _module()
    averaging = EMAWeightAveraging(decay=0.5)
    averaging.setup(SimpleNamespace(), module, "fit")
    averaging._average_model.module.feature_extractor.v.data.fill_(3.0)  # the average predicts 3 px, the raw 0
    written: list[list[np.ndarray]] = []

    def capture(frames, path):
        written.append([frame.copy() for frame in frames])
        return Path(path)

    monkeypatch.setattr(flow_callbacks, "write_video", capture)
    datamodule = SimpleNamespace(make_loader=lambda *args, **kwargs: _batches(), dataset_cfg={"batch_size": 1},
                                 preprocess_cfg={"name": "event_cube"})
    callback = FlowCallback(curriculum_param=None, video_result_every_n_epochs=1, num_video_batches=1)
    trainer = SimpleNamespace(callbacks=[averaging, callback], current_epoch=0, is_global_zero=True,
                              sanity_checking=False, datamodule=datamodule, default_root_dir=str(tmp_path), loggers=[])
    callback.on_train_epoch_end(trainer, module)

    raw = list(flow_video_frames(module, _batches(), "event_cube", 1))
    module.feature_extractor.v.data.fill_(3.0)
    averaged = list(flow_video_frames(module, _batches(), "event_cube", 1))
    assert len(written) == 1 and len(written[0]) == 2
    assert not np.array_equal(raw[0], averaged[0])  # the arrows of 3 px differ from no arrows
    assert all(np.array_equal(a, b) for a, b in zip(written[0], averaged, strict=True))
    # the module trains on with its raw weights, the average keeps its own
    module.feature_extractor.v.data.fill_(0.0)
    callback.on_train_epoch_end(trainer, module)
    assert float(averaging._average_model.module.feature_extractor.v) == 3.0
    assert all(np.array_equal(a, b) for a, b in zip(written[1], averaged, strict=True))


def test_without_weight_averaging_the_video_shows_the_weights_as_they_are(tmp_path: Path, monkeypatch) -> None:
    module = _module()
    module.feature_extractor.v.data.fill_(3.0)
    written: list[list[np.ndarray]] = []
    monkeypatch.setattr(flow_callbacks, "write_video", lambda frames, path: written.append(list(frames)) or path)
    datamodule = SimpleNamespace(make_loader=lambda *args, **kwargs: _batches(), dataset_cfg={"batch_size": 1},
                                 preprocess_cfg={"name": "event_cube"})
    callback = FlowCallback(curriculum_param=None, video_result_every_n_epochs=1, num_video_batches=1)
    trainer = SimpleNamespace(callbacks=[callback], current_epoch=0, is_global_zero=True, sanity_checking=False,
                              datamodule=datamodule, default_root_dir=str(tmp_path), loggers=[])
    callback.on_train_epoch_end(trainer, module)
    expected = list(flow_video_frames(module, _batches(), "event_cube", 1))
    assert all(np.array_equal(a, b) for a, b in zip(written[0], expected, strict=True))


# --------------------------------------------------------------------------------------------- mode=predict
PREPROCESS = {"name": "event_cube", "delta_t": 10_000, "num_tbins": 2, "channels": 6, "downsample": 0,
              "kwargs": {"num_utbins": 3, "split_polarity": True, "max_incr_per_pixel": 1}}


def test_predict_plays_a_recording_from_its_first_event(tmp_path: Path) -> None:
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = [1, 2, 3], 4, 1
    events["t"] = [1_234_567, 1_245_000, 1_262_000]  # bins of 10 ms from 1 230 000: 0, 1 and 3
    path = tmp_path / "late_td.dat"
    write_dat(path, events, 8, 8, extra_header={"Date": "2024-01-01 00:00:00"})
    [(_, loader)] = list(recording_loaders([str(path)], PREPROCESS))
    batches = list(loader)
    assert [int(b["video_infos"][0][1]) for b in batches] == [1_230_000, 1_250_000]
    counts = torch.cat([b["inputs"][:, 0] for b in batches]).sum(dim=(1, 2, 3))  # events per bin (T,)
    assert [c > 0 for c in counts.tolist()] == [True, True, False, True]
    assert float(counts.sum()) == pytest.approx(3.0)  # every event is played once (weight 1 each)


@pytest.mark.realdata
def test_predict_video_of_a_real_raw_recording_starts_at_its_first_event(realdata: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    path = realdata / "prophesee_evt2" / "gen3_640x480_a.raw"  # camera clock from 1.3179 s, 50 ms of events
    written: list[list[np.ndarray]] = []
    monkeypatch.setattr(flow_predict, "write_video", lambda frames, out: written.append(list(frames)) or out)
    preprocess = {"name": "event_cube", "delta_t": 50_000, "num_tbins": 4, "channels": 6, "downsample": 1,
                  "kwargs": {"num_utbins": 3, "split_polarity": True, "max_incr_per_pixel": 5}}
    [(_, loader)] = list(recording_loaders([str(path)], preprocess))
    [batch] = list(loader)
    assert int(batch["video_infos"][0][1]) == 1_300_000
    with_events = (batch["inputs"][:, 0].abs().sum(dim=(1, 2, 3)) > 0).tolist()
    assert with_events == [True, True, False, False]  # 1.30-1.35 s and 1.35-1.40 s, then the batch's end
    flow_predict.write_flow_videos(_module(), [str(path)], preprocess, str(tmp_path))
    assert len(written) == 1 and len(written[0]) == 4  # one frame per bin, the first one with events
    assert written[0][0].any()
