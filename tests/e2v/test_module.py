"""The Lightning module: targets from both batch kinds, and a few optimiser steps that fit a clip batch."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from evframe.tasks.e2v.clips import ClipDataset, collate_clips
from evframe.tasks.e2v.gpu_esim import GPUEBSIM
from evframe.tasks.e2v.lightning_module import EventToVideoLightningModel, frame_targets
from evframe.tasks.e2v.losses import E2VLoss
from evframe.tasks.e2v.network import EventToVideo
from evframe.tasks.e2v.predict import write_e2v_videos


def test_frame_targets_of_a_sequential_loader_batch() -> None:
    frame = torch.full((1, 4, 6), 0.25)
    batch = {"inputs": torch.zeros(2, 2, 3, 4, 6), "labels": [[frame, None], [None, frame]],
             "frame_is_labeled": torch.tensor([[True, False], [False, False]])}
    images, valid = frame_targets(batch)
    assert valid.tolist() == [[True, False], [False, False]]  # a frame in an unlabeled bin does not count
    assert float(images[0, 0].mean()) == 0.25 and float(images[1, 1].abs().sum()) == 0


def _module() -> EventToVideoLightningModel:
    torch.manual_seed(0)
    net = EventToVideo(3, 1, num_layers=2, base=6)
    return EventToVideoLightningModel(net, E2VLoss({"l1": 1.0, "ssim": 1.0, "temporal_consistency": 0.5}),
                                      optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
                                      baseline={"preprocess": "event_cube", "kwargs": {"split_polarity": False},
                                                "delta_t": 20_000})


def test_training_steps_fit_a_batch_of_clips(timing) -> None:
    clips = ClipDataset(16, 24, timing, 2, seed=0)
    esim = GPUEBSIM(DataLoader(clips, batch_size=2, collate_fn=collate_clips), {}, 4, 3, randomize_noises=False)
    batch = next(iter(esim))
    module = _module()
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(30):
        module.prepare_memory(batch)  # mask_keep_memory is 0: the same clip start every step
        pred = module(batch["inputs"])
        out = module.loss(pred, batch["images"], batch["image_valid"], batch["flow"], batch["flow_mask"],
                          batch["flow_valid"])
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert pred.shape == batch["images"].shape
    # structure (SSIM) is what a few steps learn first; a broken graph or optimiser leaves the loss flat
    assert losses[-1] < 0.85 * losses[0]


def test_predict_writes_a_reconstruction_video_per_recording(tmp_path) -> None:
    import cv2
    import numpy as np

    from evframe.tasks.e2v.recordings import frame_folder_recording

    folder = tmp_path / "bar"
    folder.mkdir()
    for i in range(8):
        image = np.full((20, 28), 60, np.uint8)
        image[:, 3 * i: 3 * i + 5] = 220
        cv2.imwrite(str(folder / f"{i}.png"), image)
    (folder / "images.txt").write_text("".join(f"{0.02 * i} {i}.png\n" for i in range(8)))
    recording = frame_folder_recording(folder, tmp_path / "cache")
    preprocess = {"name": "event_cube", "delta_t": 20_000, "num_tbins": 2, "downsample": 0, "channels": 3,
                  "kwargs": {"num_utbins": 3, "split_polarity": False}}
    (video,) = write_e2v_videos(_module(), [str(recording)], preprocess, str(tmp_path / "predictions"))
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    # 140 ms of events in bins of 20 ms: 8 frames (4 batches of 2 bins), each events | reconstruction side by side
    assert ok and frame.shape == (20, 56, 3) and count == 8
