"""The flow task's evaluation and curriculum: hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from evframe.tasks.flow.callbacks import curriculum_max_consecutive_batch
from evframe.tasks.flow.evaluation import labeled_pairs
from evframe.tasks.flow.metrics import FlowErrorMetric


def test_error_metric_is_the_exact_mean_over_pixels_of_all_batches() -> None:
    metric = FlowErrorMetric()
    gt = torch.zeros(1, 2, 2, 2)
    gt[:, 0], gt[:, 1] = 3.0, 4.0  # |gt| = 5 everywhere
    pred = gt.clone()
    pred[0, :, 0, 0] = 0.0  # error 5 at (0, 0): an outlier (> 3 px)
    mask = torch.tensor([[[True, True], [True, False]]])  # 3 pixels evaluated
    metric.update(pred, gt, mask)
    # second batch: a single pixel, error 1 -> the mean over 4 pixels is (5 + 0 + 0 + 1) / 4, not a mean of means
    metric.update(torch.tensor([[[[1.0]], [[0.0]]]]), torch.zeros(1, 2, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool))
    out = metric.compute()
    assert float(out["aee"]) == pytest.approx(6 / 4)
    assert float(out["outlier_pct"]) == pytest.approx(25.0)
    assert float(out["aee_zero"]) == pytest.approx(15 / 4)
    assert float(out["outlier_pct_zero"]) == pytest.approx(75.0)
    assert int(out["n_pixels"]) == 4


def test_error_metric_without_pixels_is_nan() -> None:
    metric = FlowErrorMetric()
    metric.update(torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    assert math.isnan(float(metric.compute()["aee"]))


def test_labeled_pairs_takes_labeled_bins_and_masks_pixels_without_events() -> None:
    inputs = torch.zeros(2, 2, 3, 2, 2)  # T=2, B=2
    inputs[1, 0, 2, 1, 1] = 0.5
    flow = torch.arange(2 * 2 * 2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 2, 2)
    gt = torch.ones(2, 2, 2)
    batch = {"inputs": inputs, "labels": [[None, None], [gt, gt]],
             "frame_is_labeled": torch.tensor([[False, False], [True, False]])}
    pred, target, mask = labeled_pairs(batch, flow)
    assert pred.shape == (1, 2, 2, 2)
    torch.testing.assert_close(pred[0], flow[1, 0])
    torch.testing.assert_close(target[0], gt)
    assert mask[0].tolist() == [[False, False], [False, True]]
    batch["frame_is_labeled"][:] = False
    assert labeled_pairs(batch, flow) is None


def test_curriculum_follows_p_to_the_epoch_minus_one() -> None:
    # int(1.414 ** (e - 1)) for e = 1..7: 1, 1.414, 1.999, 2.827, 3.998, 5.653, 7.993
    assert [curriculum_max_consecutive_batch(1.414, e) for e in range(1, 8)] == [1, 1, 1, 2, 3, 5, 7]
    assert curriculum_max_consecutive_batch(2.0, 4) == 8
    assert curriculum_max_consecutive_batch(1.414, 0) == 1  # never below one batch


class _Info:
    def __init__(self, padding: bool) -> None:
        self.padding = padding

    def is_padding(self) -> bool:
        return self.padding


def test_validation_with_a_padding_slot_between_recordings_scores_the_right_streams() -> None:
    from functools import partial

    from evframe.tasks.flow.feature_extractors import eminet
    from evframe.tasks.flow.lightning_module import FlowLightningModule
    from evframe.tasks.flow.losses import FlowLoss

    torch.manual_seed(0)
    module = FlowLightningModule(eminet(2, base=4, scales=2), FlowLoss({"data": 1.0, "smoothness": 0.1}),
                                 partial(torch.optim.SGD, lr=0.1))
    inputs = (torch.rand(2, 3, 2, 16, 16) < 0.2).float()
    inputs[:, 1] = 0  # slot 1 is padding: zeros
    gt = torch.zeros(2, 16, 16)
    batch = {"inputs": inputs, "mask_keep_memory": torch.zeros(3),
             "labels": [[gt, None, gt], [None, None, None]],
             "frame_is_labeled": torch.tensor([[True, False, True], [False, False, False]]),
             "video_infos": [(_Info(False), 0, 1), (_Info(True), 0, 0), (_Info(False), 0, 1)]}
    assert module.active_streams(batch).tolist() == [True, False, True]
    loss, flows = module._step(batch, "val")
    assert flows[-1].shape[:2] == (2, 3) and torch.isfinite(loss)
    module.validation_step(batch, 0)
    values = module.val_error.compute()
    expected_pixels = int((inputs[0, 0].abs().sum(0) > 0).sum() + (inputs[0, 2].abs().sum(0) > 0).sum())
    assert int(values["n_pixels"]) == expected_pixels


class _Recorder(torch.nn.Module):
    """A feature extractor returning zero flow and remembering the inputs it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        self.seen.append(inputs.clone())
        t, b, _, h, w = inputs.shape
        return [inputs.new_zeros(t, b, 2, h, w) + self.weight]


def test_augmentation_flips_training_inputs_only() -> None:
    from functools import partial

    from evframe.data.augment import StreamFlip
    from evframe.tasks.flow.lightning_module import FlowLightningModule
    from evframe.tasks.flow.losses import FlowLoss

    recorder = _Recorder()
    module = FlowLightningModule(recorder, FlowLoss({"data": 1.0}, channels_per_micro_bin=1),
                                 partial(torch.optim.SGD, lr=0.1),
                                 augmentation=StreamFlip(hflip=1.0, vflip=0.0, seed=0))
    inputs = torch.arange(2 * 1 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 1, 2, 3)
    batch = {"inputs": inputs, "mask_keep_memory": torch.zeros(1), "labels": [[None], [None]],
             "frame_is_labeled": torch.zeros(2, 1, dtype=torch.bool)}
    module._step(batch, "train")
    module._step(batch, "val")
    assert torch.equal(recorder.seen[0], inputs.flip(-1))
    assert torch.equal(recorder.seen[1], inputs)
