"""Training speed of the flow task: step time of the default model and the fraction of time spent waiting on data.

Runs the real data path (synthetic dataset, SequentialDataLoader with the configured workers, event_cube on the fly)
and the real module (midinet2 + FlowLoss), timing `next(batch)` separately from forward/backward/step.
Baseline in the same run: the same steps on a batch already in memory (pure compute), so
`data wait fraction = wait / (wait + compute)`; the target is under 5%.

    python experiments/benchmarks/bench_training.py [--preset tiny|default] [--steps 30] [--workers 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from evframe.config import instantiate, register_resolvers
from evframe.config.prepare import prepare_config
from evframe.run import CONFIG_DIR
from evframe.runner import configure_threads


def build(preset: str, workers: int, data_dir: Path):
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset.preset={preset}", f"dataset.num_workers={workers}",
                                           "logger=none"])
    with open_dict(cfg):
        cfg.paths.root_dir = str(data_dir.parent)
        cfg.paths.data_dir = str(data_dir)
        cfg.paths.output_dir = str(data_dir.parent / "bench_run")
    cfg = prepare_config(cfg)
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.prepare_data()
    module = instantiate(cfg.task.module)
    return cfg, datamodule, module


def train_step(module, optimizer, batch) -> float:
    module.prepare_memory(batch)
    flows = module(batch["inputs"])
    loss = module.loss(batch["inputs"], flows)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data-dir", default="outputs/datasets")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the runner's rule)")
    args = parser.parse_args()
    cfg, datamodule, module = build(args.preset, args.workers, Path(args.data_dir).resolve())
    with open_dict(cfg):
        cfg.num_threads = args.threads
    configure_threads(cfg)
    optimizer = module.configure_optimizers()
    loader = datamodule.make_loader("train")
    print(f"flow task: {cfg.model._target_.rsplit('.', 1)[-1]} base={cfg.model.base}, inputs "
          f"(T={cfg.preprocess.num_tbins}, B={cfg.dataset.batch_size}, C={cfg.preprocess.channels}, "
          f"{cfg.preprocess.height}x{cfg.preprocess.width}), {args.workers} loader worker(s), torch threads "
          f"{torch.get_num_threads()}")

    wait = compute = 0.0
    steps = 0
    first_batch = None
    iterator = iter(loader)
    while steps < args.steps:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        t1 = time.perf_counter()
        train_step(module, optimizer, batch)
        t2 = time.perf_counter()
        if steps > 0:  # the first batch pays worker start-up and warm-up of both sides
            wait += t1 - t0
            compute += t2 - t1
        first_batch = first_batch or batch
        steps += 1
    measured = steps - 1
    t0 = time.perf_counter()
    for _ in range(measured):
        train_step(module, optimizer, first_batch)
    pure = (time.perf_counter() - t0) / measured
    print(f"training step (data in memory, baseline): {pure * 1e3:8.1f} ms")
    print(f"training step (real loader):              {(wait + compute) / measured * 1e3:8.1f} ms "
          f"= {compute / measured * 1e3:.1f} ms compute + {wait / measured * 1e3:.1f} ms waiting on data")
    print(f"data wait fraction: {wait / (wait + compute) * 100:.1f}% (target < 5%); "
          f"real/baseline step ratio {(wait + compute) / measured / pure:.2f}")


if __name__ == "__main__":
    main()
