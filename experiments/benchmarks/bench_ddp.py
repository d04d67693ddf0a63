"""Scale-out and checkpoint costs: Lightning DDP on CPU (2 processes, gloo) against 1 process, and checkpoint saves.

1. Throughput: the flow task's module (midinet2 + FlowLoss, default input 120x152, T=4 event_cube bins) trained by
   Lightning for the same total batch: 1 process with batch B using every core, against 2 DDP processes with B/2
   each and the cores split between them (what ``trainer=ddp_sim`` does). Batches are random sparse tensors held
   in memory, so only compute and gradient all-reduce are measured. Reported: samples/s and the ratio DDP / 1.
2. Checkpoints: time per ``trainer.save_checkpoint`` of the same module with evframe's ``AtomicCheckpointIO``
   (temp file + fsync + rename) and with Lightning's default ``TorchCheckpointIO``, and that time as a share of a
   training step (the overhead of saving ``last.ckpt`` every step; evframe saves it once per epoch).

    python experiments/benchmarks/bench_ddp.py [--steps 12] [--batch 4] [--saves 10] [--repeats 2]

Numbers depend on the machine; nothing fails when it is slow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import open_dict

from evframe.config import instantiate, register_resolvers
from evframe.config.prepare import prepare_config
from evframe.run import CONFIG_DIR
from evframe.utils.checkpoint import AtomicCheckpointIO

WARMUP = 2


def build_module(root: Path) -> tuple[L.LightningModule, tuple[int, ...]]:
    """The flow task's LightningModule from the default config; returns it and one stream's input shape."""
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=none"])
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "run")
    cfg = prepare_config(cfg)
    shape = (int(cfg.preprocess.num_tbins), int(cfg.preprocess.channels), int(cfg.preprocess.height),
             int(cfg.preprocess.width))
    return instantiate(cfg.task.module), shape


class InMemoryBatches:
    """Random sparse event tensors ``(T, B, C, H, W)`` (Poisson counts, mean 0.05 per pixel) in the sequential
    loader's batch format, made once and replayed (an iterable with a length, as the loader; a plain list would be
    read by Lightning as a list of loaders)."""

    def __init__(self, count: int, batch: int, shape: tuple[int, ...], seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        t, c, h, w = shape
        self.batches = [{"inputs": torch.poisson(torch.full((t, batch, c, h, w), 0.05), generator=g),
                         "mask_keep_memory": torch.ones(batch), "video_infos": []} for _ in range(count)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class StepTimer(L.Callback):
    """Wall time of the training steps after the warm-up ones, written by global rank 0 to ``path`` (JSON)."""

    def __init__(self, path: str, warmup: int) -> None:
        self.path, self.warmup, self.start = path, warmup, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            steps = trainer.global_step - self.warmup
            Path(self.path).write_text(json.dumps({"seconds": time.perf_counter() - self.start, "steps": steps}))


class _ThreadsPerProcess(L.Callback):
    """Every DDP process (spawned ones too) uses ``threads`` torch threads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, trainer, pl_module, stage) -> None:
        torch.set_num_threads(self.threads)


def time_training(root: Path, processes: int, total_batch: int, steps: int, threads: int) -> float:
    """Seconds per training step (after warm-up) for ``total_batch`` samples split over ``processes``."""
    module, shape = build_module(root)
    data = InMemoryBatches(steps + WARMUP, total_batch // processes, shape, seed=0)
    result = root / f"timing_{processes}.json"
    # the DDP launcher users get (trainer=ddp_sim): rank 1 is this script started again with LOCAL_RANK=1
    strategy = DDPStrategy(process_group_backend="gloo") if processes > 1 else "auto"
    trainer = L.Trainer(accelerator="cpu", devices=processes, strategy=strategy, max_steps=steps + WARMUP,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[StepTimer(str(result), WARMUP), _ThreadsPerProcess(threads)])
    trainer.fit(module, train_dataloaders=data)
    timing = json.loads(result.read_text())
    return timing["seconds"] / timing["steps"]


def time_saves(root: Path, saves: int, io: object) -> tuple[float, int]:
    """Mean seconds per ``trainer.save_checkpoint`` (full training state) and the file size."""
    module, shape = build_module(root)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, plugins=[io])
    # one step, so the optimizer state exists as in training
    trainer.fit(module, train_dataloaders=InMemoryBatches(1, 1, shape, seed=1))
    path = root / f"{type(io).__name__}.ckpt"
    trainer.save_checkpoint(path)  # warm-up (file creation)
    start = time.perf_counter()
    for _ in range(saves):
        trainer.save_checkpoint(path)
    return (time.perf_counter() - start) / saves, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--batch", type=int, default=4, help="total batch (streams) per step, split over processes")
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="alternated measurements of each; the best is kept")
    parser.add_argument("--ddp-only", metavar="DIR", help=argparse.SUPPRESS)  # the DDP measurement's own process
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.ddp_only:  # both ranks run this; rank 0 leaves the timing in DIR
        time_training(Path(args.ddp_only), 2, args.batch, args.steps, threads=max(1, cores // 2))
        return
    print(f"CPU cores: {cores}; flow module midinet2, total batch {args.batch}, {args.steps} timed steps")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # alternated and the best of each kept: on a shared machine other jobs come and go
        singles, single_1t, ddps = [], [], []
        for _ in range(args.repeats):
            singles.append(time_training(root, 1, args.batch, args.steps, threads=cores))
            single_1t.append(time_training(root, 1, args.batch, args.steps, threads=1))
            # in a process of its own: Lightning's DDP launcher starts rank 1 by running its command again
            subprocess.run([sys.executable, __file__, "--ddp-only", str(root), "--steps", str(args.steps),
                            "--batch", str(args.batch)], check=True)
            timing = json.loads((root / "timing_2.json").read_text())
            ddps.append(timing["seconds"] / timing["steps"])
        single, single1, ddp = min(singles), min(single_1t), min(ddps)
        print(f"1 process  ({cores} threads, batch {args.batch}):        {single * 1000:7.0f} ms/step "
              f"{args.batch / single:6.2f} samples/s")
        print(f"1 process  (1 thread, batch {args.batch}):         {single1 * 1000:7.0f} ms/step "
              f"{args.batch / single1:6.2f} samples/s")
        print(f"DDP 2 proc ({max(1, cores // 2)} thread(s) each, batch {args.batch // 2} each): {ddp * 1000:7.0f} "
              f"ms/step {args.batch / ddp:6.2f} samples/s")
        print(f"DDP / 1 process throughput: {single / ddp:.2f}x (1 process with {cores} threads), "
              f"{single1 / ddp:.2f}x (1 process, 1 thread)")

        atomic, size = time_saves(root, args.saves, AtomicCheckpointIO())
        plain, _ = time_saves(root, args.saves, TorchCheckpointIO())
        print(f"checkpoint ({size / 1e6:.1f} MB, weights + optimizer + loops): atomic {atomic * 1000:.1f} ms/save, "
              f"Lightning default {plain * 1000:.1f} ms/save ({atomic / plain:.2f}x); "
              f"one save = {100 * atomic / min(single, single1):.1f}% of a 1-process training step (the faster)")


if __name__ == "__main__":
    main()
