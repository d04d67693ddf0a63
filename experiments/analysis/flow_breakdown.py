"""Breaks a trained flow run's test error down by recording, ground-truth speed and motion boundary.

    python experiments/analysis/flow_breakdown.py outputs/flow/runs/<stamp> [--ckpt FILE] [--split test]

Prints :class:`evframe.tasks.flow.analysis.ErrorBreakdown`'s table (AEE and zero-flow AEE on pixels with events,
at the network resolution, in pixels per bin), then, per recording, the self-supervised loss (finest level) of the
prediction beside that of the ground truth and of zero flow, over the whole image and (data term) only at pixels
farther than ``--far-radius`` pixels from any motion boundary. When the prediction scores a lower loss than the
ground truth, the loss, not the network, limits the accuracy there. Last, the ground truth with each object's motion
spread 2, 4 and 8 px into the background (:func:`~evframe.tasks.flow.analysis.spread_object_motion`): its loss
beside the ground truth's says whether the loss itself prefers a halo around moving objects, and its AEE ratio what
such a halo costs.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import OmegaConf

from evframe.config.instantiate import instantiate
from evframe.tasks.flow.analysis import ErrorBreakdown, motion_boundaries, spread_object_motion
from evframe.tasks.flow.losses import FlowLoss, data_loss, gaussian_blur
from evframe.utils.checkpoint import load_module_weights

HALO_RADII = (2, 4, 8)


def weighted_loss(loss: FlowLoss, inputs: torch.Tensor, flow: torch.Tensor) -> float:
    """The finest-level loss of ``flow`` for ``inputs`` (both at one resolution): the weighted sum of its terms."""
    return sum(float(value) * loss.weights[name] for name, value in loss.level_terms(inputs, flow).items())


def default_checkpoint(run_dir: Path) -> Path:
    """The best epoch checkpoint of a run (``epochNNN.ckpt``), else ``last.ckpt``."""
    best = sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))
    path = best[-1] if best else run_dir / "checkpoints" / "last.ckpt"
    if not path.exists():
        raise SystemExit(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}; give one with --ckpt")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a flow run directory (holds config.yaml and checkpoints/)")
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--far-radius", type=int, default=10,
                        help="pixels from a motion boundary beyond which the data term is also compared")
    args = parser.parse_args()
    config_path = args.run_dir / "config.yaml"
    if not config_path.exists():
        raise SystemExit(f"{args.run_dir}: no config.yaml (is it a run directory?)")
    cfg = OmegaConf.load(config_path)
    if cfg.task.name != "flow":
        raise SystemExit(f"{args.run_dir}: a {cfg.task.name} run; this breakdown is for flow runs")
    ckpt = args.ckpt or default_checkpoint(args.run_dir)
    module = instantiate(cfg.task.module, allowed_targets=cfg.get("allowed_targets"))
    load_module_weights(module, str(ckpt))
    module.eval()
    datamodule = instantiate(cfg.task.datamodule, allowed_targets=cfg.get("allowed_targets"))
    datamodule.prepare_data()
    loader = datamodule.make_loader(args.split, shuffle=False)
    breakdown = ErrorBreakdown()
    losses: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    halos: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with torch.no_grad():
        for batch in loader:
            module.prepare_memory(batch)
            flow = module(batch["inputs"])[-1]
            for b, info in enumerate(batch["video_infos"]):
                name = Path(str(info[0].path)).stem
                labels = [row[b] for row in batch["labels"]]
                for t, gt in enumerate(labels):
                    if gt is not None and bool(batch["frame_is_labeled"][t, b]):
                        gt = torch.as_tensor(gt)
                        breakdown.update(flow[t, b][None], gt[None], batch["inputs"][t, b].abs().sum(0)[None] > 0,
                                         group=name)
                if any(gt is None for gt in labels):
                    continue
                gt = torch.nan_to_num(torch.stack([torch.as_tensor(g) for g in labels]))[:, None]
                inputs = batch["inputs"][:, b:b + 1]
                far = (~motion_boundaries(gt[:, 0], radius=args.far_radius))[:, None]  # (T, 1, H, W)
                blurred = gaussian_blur(inputs[:, 0], module.loss.blur_sigma)[:, None]
                for tag, candidate in (("prediction", flow[:, b:b + 1]), ("ground truth", gt), ("zero", gt * 0)):
                    losses[name][tag] += weighted_loss(module.loss, inputs, candidate)
                    losses[name]["far " + tag] += float(data_loss(blurred, candidate, far, blur_sigma=0.0))
                losses[name]["batches"] += 1
                scored = inputs[:, 0].abs().sum(1) > 0  # (T, H, W) pixels with events
                halos[name]["zero"] += float(torch.linalg.vector_norm(gt[:, 0], dim=1)[scored].sum())
                for radius in HALO_RADII:
                    spread = spread_object_motion(gt[:, 0], radius)[:, None]
                    halos[name][f"loss {radius}"] += weighted_loss(module.loss, inputs, spread)
                    halos[name][f"error {radius}"] += float(
                        torch.linalg.vector_norm(spread[:, 0] - gt[:, 0], dim=1)[scored].sum())
    print(f"{args.run_dir} ({ckpt.name}), split {args.split}: AEE in pixels per bin on pixels with events")
    print(breakdown.format())
    print("\nloss (finest level, weighted sum of the terms) per fully labelled batch; then the data term alone at "
          f"pixels farther than {args.far_radius} px from a motion boundary")
    for name, values in losses.items():
        n = max(values["batches"], 1)
        for prefix in ("", "far "):
            print(f"{name:<28}{prefix or 'all':<5}" + "".join(f"{tag} {values[prefix + tag] / n:+.4f}   "
                                                          for tag in ("prediction", "ground truth", "zero")))
    print("\nground truth with object motion spread r px into the background: loss (finest level, as above) and AEE "
          "ratio against the ground truth")
    for name, values in halos.items():
        n = max(losses[name]["batches"], 1)
        zero = max(values["zero"], 1e-12)
        cells = [f"r={r}: loss {values[f'loss {r}'] / n:+.4f} ratio {values[f'error {r}'] / zero:.3f}   "
                 for r in HALO_RADII]
        print(f"{name:<28}" + "".join(cells))


if __name__ == "__main__":
    main()
