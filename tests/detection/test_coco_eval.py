"""COCO evaluation of timestamped boxes: hand-computed APs, the time tolerance, and equality with pycocotools run
directly on the same boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evframe.data.metadata import FileMetadata
from evframe.io.dtypes import BBOX_DTYPE
from evframe.tasks.detection.coco_eval import evaluate_detection, match_times
from evframe.tasks.detection.evaluation import DetectionEvaluator

CLASSES = ["car", "pedestrian"]


def boxes(rows: list[tuple]) -> np.ndarray:
    """rows of (t, x, y, w, h, class_id[, score])."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, row in enumerate(rows):
        out[i]["t"], out[i]["x"], out[i]["y"], out[i]["w"], out[i]["h"], out[i]["class_id"] = row[:6]
        out[i]["class_confidence"] = row[6] if len(row) > 6 else 1.0
    return out


def test_one_box_with_iou_0625_hand_computed() -> None:
    gt = boxes([(50_000, 0, 0, 10, 10, 1)])
    dt = boxes([(50_000, 0, 0, 10, 16, 1, 0.9)])  # IoU 100 / 160 = 0.625: a match at IoU 0.50, 0.55, 0.60 only
    m = evaluate_detection([gt], [dt], CLASSES, 240, 304)
    assert m["mAP_50"] == pytest.approx(1.0) and m["mAP_75"] == pytest.approx(0.0)
    assert m["mAP"] == pytest.approx(0.3)  # 3 of the 10 IoU thresholds 0.50:0.95
    assert m["mAP_small"] == pytest.approx(0.3)  # area 100 < 32^2
    assert m["mAP_medium"] == -1.0 and m["mAP_large"] == -1.0  # no ground truth there


def test_time_tolerance_decides_which_detections_meet_a_label() -> None:
    gt = boxes([(50_000, 0, 0, 40, 40, 1)])
    dt = boxes([(80_000, 0, 0, 40, 40, 1, 0.9)])  # 30 ms after the label
    assert evaluate_detection([gt], [dt], CLASSES, 240, 304, time_tol=25_000)["mAP"] == pytest.approx(0.0)
    assert evaluate_detection([gt], [dt], CLASSES, 240, 304, time_tol=30_000)["mAP"] == pytest.approx(1.0)
    frames = match_times(boxes([(10, 0, 0, 1, 1, 1), (20, 0, 0, 1, 1, 1), (20, 1, 1, 1, 1, 2)]),
                         boxes([(5, 0, 0, 1, 1, 1), (14, 0, 0, 1, 1, 1), (16, 0, 0, 1, 1, 1)]), 5)
    assert [(len(g), len(d)) for g, d in frames] == [(1, 2), (2, 1)]  # t=10 meets 5 and 14; t=20 meets 16


def test_wrong_class_no_detection_and_no_ground_truth() -> None:
    gt = boxes([(50_000, 0, 0, 40, 40, 1)])
    assert evaluate_detection([gt], [boxes([(50_000, 0, 0, 40, 40, 2, 0.9)])], CLASSES, 240, 304)["mAP"] == 0.0
    assert evaluate_detection([gt], [boxes([])], CLASSES, 240, 304)["mAP"] == 0.0
    assert set(evaluate_detection([boxes([])], [boxes([])], CLASSES, 240, 304).values()) == {-1.0}


def _direct_pycocotools(frames: list[tuple[list, list]]) -> np.ndarray:
    """COCOeval stats of images given as (gt rows, dt rows) lists, built with pycocotools' own API."""
    images = [{"id": i + 1, "height": 240, "width": 304} for i in range(len(frames))]
    anns, dets = [], []
    for i, (gts, dts) in enumerate(frames):
        for x, y, w, h, c in gts:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "bbox": [x, y, w, h], "area": w * h,
                         "category_id": c, "iscrowd": 0})
        for x, y, w, h, c, s in dts:
            dets.append({"image_id": i + 1, "bbox": [x, y, w, h], "category_id": c, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "pedestrian"}]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:6]


def test_equals_pycocotools_run_directly_on_the_same_boxes() -> None:
    rng = np.random.default_rng(0)
    gt_list, dt_list, frames = [], [], []
    for _ in range(2):  # recordings
        gt_rows, dt_rows = [], []
        for ts in range(50_000, 550_000, 50_000):
            gts, dts = [], []
            for _ in range(int(rng.integers(1, 4))):
                x, y = rng.uniform(0, 250, 2)
                w, h = rng.uniform(8, 120, 2)
                c = int(rng.integers(1, 3))
                gts.append((round(x, 2), round(y, 2), round(w, 2), round(h, 2), c))
                for _ in range(2):  # noisy detections, some of the wrong class, within 10 ms of the label
                    jitter = rng.normal(0, 6, 4)
                    det = (x + jitter[0], y + jitter[1], max(w + jitter[2], 2), max(h + jitter[3], 2),
                           c if rng.random() < 0.8 else 3 - c, float(rng.uniform(0.05, 1)))
                    dts.append(tuple(round(float(v), 2) if i < 4 else v for i, v in enumerate(det)))
            frames.append((gts, dts))
            gt_rows += [(ts, *g) for g in gts]
            dt_rows += [(ts + int(rng.integers(-10_000, 10_001)), *d) for d in dts]
        gt_list.append(boxes(gt_rows))
        dt_list.append(boxes(dt_rows))
    ours = evaluate_detection(gt_list, dt_list, CLASSES, 240, 304, time_tol=25_000)
    direct = _direct_pycocotools(frames)
    assert 0.05 < direct[0] < 0.95  # a case where the metrics are informative
    # float32 box storage vs the rounded float64 values given to pycocotools directly: equal to 1e-6
    assert list(ours.values()) == pytest.approx(direct.tolist(), abs=1e-6)


def test_evaluator_scales_to_sensor_pixels_and_stamps_bin_ends() -> None:
    md = FileMetadata("rec_td.dat", 400_000, 50_000, 2, height=240, width=304, downsample=1)
    gt_bin1 = boxes([(100_000, 10, 10, 20, 20, 1)])  # network pixels (120x152)
    batch = {"frame_is_labeled": torch.tensor([[False], [True]]), "labels": [[None], [gt_bin1]],
             "video_infos": [(md, 0, 100_000)]}
    evaluator = DetectionEvaluator(CLASSES)
    det = torch.tensor([[10.0, 10, 30, 30, 0.8, 1]])  # the same box, predicted in bin 1 (ends at 100 ms)
    evaluator.update(batch, [[torch.zeros(0, 6)], [det]])
    assert evaluator.compute()["mAP"] == pytest.approx(1.0)
    # in sensor pixels the box is 40x40 = 1600 px^2: a medium object, not a small one
    evaluator.update(batch, [[torch.zeros(0, 6)], [det]])
    m = evaluator.compute()
    assert m["mAP_medium"] == pytest.approx(1.0) and m["mAP_small"] == -1.0
    evaluator.reset()
    evaluator.update(batch, [[det], [torch.zeros(0, 6)]])  # predicted one bin early (ends at 50 ms): no match
    assert evaluator.compute()["mAP"] == pytest.approx(0.0)


def _recording_batch(name: str, gt_rows: list[tuple]) -> dict:
    md = FileMetadata(name, 100_000, 50_000, 1, height=240, width=304)
    return {"frame_is_labeled": torch.tensor([[True]]), "labels": [[boxes(gt_rows)]], "video_infos": [(md, 0, 50_000)]}


# rank 0's recording: a car found exactly; rank 1's: a car missed and a confident false detection. Alone, rank 0
# scores AP 1 and rank 1 AP 0; over the union the false detection outranks the true one (precision 0.5 at recall 0.5).
SHARES = [
    (_recording_batch("a_td.dat", [(50_000, 0, 0, 40, 40, 1)]), torch.tensor([[0.0, 0, 40, 40, 0.6, 1]])),
    (_recording_batch("b_td.dat", [(50_000, 100, 100, 40, 40, 1)]), torch.tensor([[200.0, 150, 240, 190, 0.9, 1]])),
]


def test_merged_evaluators_score_the_union_of_their_recordings() -> None:
    single = DetectionEvaluator(CLASSES)
    shares = []
    for batch, det in SHARES:
        single.update(batch, [[det]])
        share = DetectionEvaluator(CLASSES)
        share.update(batch, [[det]])
        shares.append(share)
    assert shares[0].compute()["mAP_50"] == pytest.approx(1.0) and shares[1].compute()["mAP_50"] == 0.0
    union = single.compute()
    assert 0.2 < union["mAP_50"] < 0.8  # neither share's value
    merged = DetectionEvaluator(CLASSES)
    merged.merge([s.state() for s in shares])
    assert merged.num_recordings == 2 and merged.compute() == union


def _gather_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import json

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        evaluator = DetectionEvaluator(CLASSES)
        batch, det = SHARES[rank]
        evaluator.update(batch, [[det]])
        evaluator.gather()
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(evaluator.compute(), f)
    finally:
        torch.distributed.destroy_process_group()


def test_gather_over_two_gloo_processes_gives_every_rank_the_union(tmp_path) -> None:
    import json

    import torch.multiprocessing as mp

    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = DetectionEvaluator(CLASSES)
    for batch, det in SHARES:
        single.update(batch, [[det]])
    expected = single.compute()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == pytest.approx(expected), rank


def test_default_matching_pairs_a_label_with_the_bin_that_holds_it() -> None:
    """A label at 60 ms lies in bin 1 = (50, 100] ms, trained with that bin's output: the detection stamped at that
    bin's end (100 ms) is its match, not the one of bin 0 (50 ms), although 50 ms is nearer in time."""
    md = FileMetadata("rec_td.dat", 400_000, 50_000, 2, height=240, width=304)
    gt = boxes([(60_000, 10, 10, 40, 40, 1)])
    batch = {"frame_is_labeled": torch.tensor([[False], [True]]), "labels": [[None], [gt]],
             "video_infos": [(md, 0, 100_000)]}
    det = torch.tensor([[10.0, 10, 50, 50, 0.8, 1]])
    for bins, expected in (([torch.zeros(0, 6), det], 1.0), ([det, torch.zeros(0, 6)], 0.0)):
        evaluator = DetectionEvaluator(CLASSES)
        evaluator.update(batch, [[b] for b in bins])
        assert evaluator.compute()["mAP"] == pytest.approx(expected)
    symmetric = DetectionEvaluator(CLASSES, time_tol=25_000)  # an explicit tolerance is symmetric
    symmetric.update(batch, [[det], [torch.zeros(0, 6)]])
    assert symmetric.compute()["mAP"] == pytest.approx(1.0)
