"""Speed of the detection task: anchor encoding, decoding + NMS, COCO evaluation and the training step.

Each number is printed beside a baseline measured in the same run:

* anchor encoding of a batch (B=8, T=5, 30 boxes per frame, 240x304 input, the default model's 4 pyramid levels):
  ``Anchors.encode`` (all frames at once) vs ``assign_priors`` + ``bbox_to_deltas`` frame by frame;
* decoding + NMS of the same 40 frames: ``Anchors.batched_decode`` (one batched NMS over frames and classes) vs
  torchvision's NMS frame by frame and class by class;
* COCO evaluation of the synthetic test set (ground truth jittered as detections): ``evaluate_detection`` (time
  windows + conversion + pycocotools) vs pycocotools alone on the already converted dicts;
* training step of the default config (``task=detection``) on real batches from the loader: time waiting for data
  vs compute (forward, loss, backward, optimizer step), and the inference step (forward + decoding) for comparison.

    python experiments/benchmarks/bench_detection.py [--steps 10] [--data-dir outputs/datasets] [--preset default]
        [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from evframe.config import instantiate, register_resolvers
from evframe.config.prepare import prepare_config
from evframe.io import load_boxes
from evframe.run import CONFIG_DIR
from evframe.tasks.detection.anchors import Anchors
from evframe.tasks.detection.box_ops import assign_priors, bbox_to_deltas
from evframe.tasks.detection.coco_eval import coco_eval, evaluate_detection, match_times, to_coco
from evframe.tasks.detection.targets import flatten_targets, labeled_mask


def best_of(fn, repeats: int = 5) -> float:
    """Smallest wall time of ``repeats`` calls in seconds (the least disturbed by other jobs)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pyramid(height: int = 240, width: int = 304, stride: int = 16, levels: int = 4) -> list[torch.Tensor]:
    """Feature maps of the default model (``stem_depth: 4``, 4 levels): 15x19, 8x10, 4x5, 2x3 at 240x304."""
    sizes, h, w = [], -(-height // stride), -(-width // stride)
    for _ in range(levels):
        sizes.append(torch.zeros(1, 1, h, w))
        h, w = -(-h // 2), -(-w // 2)
    return sizes


def random_targets(n_frames: int, n_boxes: int, generator: torch.Generator) -> list[torch.Tensor]:
    out = []
    for _ in range(n_frames):
        xy = torch.rand(n_boxes, 2, generator=generator) * torch.tensor([280.0, 220.0])
        wh = 8 + torch.rand(n_boxes, 2, generator=generator) * 80
        cls = torch.randint(1, 4, (n_boxes, 1), generator=generator).float()
        out.append(torch.cat([xy, (xy + wh).clamp(max=torch.tensor([304.0, 240.0])), cls], 1))
    return out


def bench_encoding() -> None:
    anchors = Anchors(num_levels=4, base_size=32)
    x, feats = torch.zeros(1, 2, 240, 304), pyramid()
    grid = anchors(feats, x)
    targets = random_targets(40, 30, torch.Generator().manual_seed(0))

    def per_frame() -> None:
        for t in targets:
            boxes, _ = assign_priors(t[:, :4], t[:, 4], anchors.anchors_xyxy, 0.5, 0.3, True)
            bbox_to_deltas(boxes, grid)

    batched = best_of(lambda: anchors.encode(feats, x, targets))
    loop = best_of(per_frame)
    print(f"anchor encoding, B=8 x T=5 frames, 30 boxes each, {grid.shape[0]} anchors at 240x304: "
          f"{batched * 1e3:.1f} ms batched, {loop * 1e3:.1f} ms frame by frame ({loop / batched:.1f}x)")


def bench_decoding() -> None:
    anchors = Anchors(num_levels=4, base_size=32)
    x, feats = torch.zeros(1, 2, 240, 304), pyramid()
    grid = anchors(feats, x)
    g = torch.Generator().manual_seed(1)
    n, a, c = 40, grid.shape[0], 3
    boxes = anchors.anchors_xyxy[None].expand(n, a, 4) + torch.randn(n, a, 4, generator=g)
    scores = torch.rand(n, a, c, generator=g) ** 8  # mostly low, a few hundred above 0.3 per frame

    def per_frame() -> None:
        for i in range(n):
            for k in range(c):
                keep = scores[i, :, k] > 0.3
                s, b = scores[i, keep, k], boxes[i, keep]
                top = s.topk(min(100, len(s))).indices
                torchvision.ops.nms(b[top], s[top], 0.5)

    batched = best_of(lambda: anchors.batched_decode(boxes, scores, 0.3, 0.5, 100))
    loop = best_of(per_frame)
    print(f"decoding + NMS of 40 frames x {a} anchors x {c} classes (score > 0.3, top 100): "
          f"{batched * 1e3:.1f} ms batched, {loop * 1e3:.1f} ms frame by frame and class by class "
          f"({loop / batched:.1f}x)")


def bench_coco(root: Path) -> None:
    files = sorted((root / "test").glob("*_bbox.npy"))
    rng = np.random.default_rng(0)
    gts, dts = [], []
    for path in files:
        gt = load_boxes(path)
        gt = gt[gt["class_id"] < 3].copy()
        gt["class_id"] += 1
        dt = np.repeat(gt, 3)  # three noisy detections per box
        for name, sigma in (("x", 4), ("y", 4), ("w", 3), ("h", 3)):
            dt[name] += rng.normal(0, sigma, len(dt)).astype(np.float32)
        dt["w"], dt["h"] = np.maximum(dt["w"], 1), np.maximum(dt["h"], 1)
        dt["class_confidence"] = rng.uniform(0.05, 1, len(dt))
        gts.append(gt)
        dts.append(dt)
    n_boxes = sum(len(g) for g in gts)
    ours = best_of(lambda: evaluate_detection(gts, dts, ["car", "pedestrian", "two_wheeler"], 240, 304, 25_000), 3)
    frames = [f for g, d in zip(gts, dts, strict=True) for f in match_times(g, d, 25_000)]
    dataset, results = to_coco(frames, ["car", "pedestrian", "two_wheeler"], 240, 304)
    direct = best_of(lambda: coco_eval(dataset, results), 3)
    result = evaluate_detection(gts, dts, ["car", "pedestrian", "two_wheeler"], 240, 304, 25_000)
    print(f"COCO evaluation of the synthetic test set ({len(files)} recordings, {len(frames)} labelled frames, "
          f"{n_boxes} boxes, {3 * n_boxes} detections): {ours:.2f} s, of which pycocotools alone {direct:.2f} s "
          f"({ours / direct:.2f}x); jittered ground truth scores mAP {result['mAP']:.3f}, mAP@50 "
          f"{result['mAP_50']:.3f}")


def build_task(data_dir: Path, preset: str):
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["task=detection", f"dataset.preset={preset}", "logger=none"])
    with open_dict(cfg):
        cfg.paths.root_dir = str(data_dir.parent)
        cfg.paths.data_dir = str(data_dir)
        cfg.paths.output_dir = str(data_dir.parent / "bench_run")
    cfg = prepare_config(cfg)
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.prepare_data()
    return cfg, datamodule, instantiate(cfg.task.module)


def bench_training(cfg, datamodule, module, steps: int) -> None:
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    iterator = iter(datamodule.make_loader("train"))
    wait = compute = infer = 0.0
    for step in range(steps + 1):
        t0 = time.perf_counter()
        batch = next(iterator)
        t1 = time.perf_counter()
        module.prepare_memory(batch)
        outputs = module(batch["inputs"])
        loss = module.model.loss_from_outputs(outputs, batch["inputs"], flatten_targets(batch["labels"]),
                                              labeled_mask(batch, module.active_streams(batch)))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        with torch.no_grad():
            module.prepare_memory(batch)
            module.model.get_boxes(batch["inputs"], module.score_thresh, module.nms_thresh)
        t3 = time.perf_counter()
        if step > 0:  # the first step pays for worker start-up and lazy allocations
            wait, compute, infer = wait + t1 - t0, compute + t2 - t1, infer + t3 - t2
    p = cfg.preprocess
    print(f"training step, {cfg.model.feature_extractor} base {cfg.model.feature_base} cout "
          f"{cfg.model.feature_channels_out} (T={p.num_tbins}, B={cfg.dataset.batch_size}, C={p.channels}, "
          f"{p.height}x{p.width}), {torch.get_num_threads()} torch threads, {cfg.dataset.num_workers} loader "
          f"worker(s): {compute / steps * 1e3:.0f} ms compute + {wait / steps * 1e3:.0f} ms waiting for data "
          f"({wait / (wait + compute):.1%} of the step); inference (forward + decoding) {infer / steps * 1e3:.0f} ms "
          f"({compute / infer:.1f}x less than a training step)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--data-dir", default="outputs/datasets")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bench_encoding()
    bench_decoding()
    cfg, datamodule, module = build_task(Path(args.data_dir).resolve(), args.preset)
    bench_coco(Path(cfg.dataset.root))
    bench_training(cfg, datamodule, module, args.steps)


if __name__ == "__main__":
    main()
