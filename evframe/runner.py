"""What a run does once the config is composed: build the task's components and train, test or predict.

Every component comes from config through :func:`evframe.config.instantiate` (allow-listed ``_target_``s).

Lifecycle: ``ckpt_path`` is resolved first (``last`` -> the newest checkpoint of this run directory or of the latest
run of the same experiment directory; a run that finds checkpoints in its own directory is a requeued job and
resumes from them), the checkpoint is checked against the config (another task or model is refused, listing what
differs) and its W&B run id is reused so curves continue. SIGTERM stops training after the current batch with
``checkpoints/interrupted.ckpt`` saved, and the process exits with status 143. Under DDP every rank runs this code;
only global rank 0 writes the run directory's files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from evframe.config import instantiate
from evframe.config.prepare import MODES, ConfigError, prepare_config
from evframe.utils.checkpoint import (
    METADATA_KEY,
    MODE_PURPOSE,
    RunMetadata,
    check_checkpoint_matches,
    checkpoint_for,
    find_resumable,
    read_checkpoint,
    resolve_ckpt_path,
)
from evframe.utils.config_tree import print_and_save_config
from evframe.utils.distributed import announce_sweep_job, is_primary_process

log = logging.getLogger(__name__)


def _build(cfg: DictConfig, node: Any, **kwargs: Any) -> Any:
    return instantiate(node, allowed_targets=cfg.get("allowed_targets"), **kwargs)


def _build_group(cfg: DictConfig, group: DictConfig | None) -> list[Any]:
    """Instantiates every entry of a group that is a mapping of components (callbacks, loggers)."""
    if not group:
        return []
    return [_build(cfg, node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def build_trainer(cfg: DictConfig) -> tuple[L.Trainer, list[Any]]:
    """The Lightning Trainer with the config's callbacks and loggers (no logger -> ``logger=False``)."""
    callbacks = _build_group(cfg, cfg.get("callbacks"))
    for callback in callbacks:
        if isinstance(callback, RunMetadata):  # it stores the config in every checkpoint
            callback.set_config(OmegaConf.to_container(cfg, resolve=True))
    loggers = _build_group(cfg, cfg.get("logger"))
    trainer = _build(cfg, cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer, loggers


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def prepare_checkpoint(cfg: DictConfig) -> DictConfig:
    """Resolves ``ckpt_path`` to a file (see :func:`~evframe.utils.checkpoint.resolve_ckpt_path`), checks that it
    can serve ``cfg.mode`` (:func:`~evframe.utils.checkpoint.checkpoint_for`: readable, a ``state_dict`` of tensors,
    the training state to resume) and was written with this run's task and model, and, resuming training, keeps the
    W&B run id stored in the checkpoint. In mode=train without ``ckpt_path``, checkpoints already in this run's
    directory mean a requeued job: it resumes from the newest. Returns the updated config.

    Raises:
        CheckpointError: naming the file and what is wrong, before any data or model is built.
    """
    output_dir = Path(cfg.paths.output_dir)
    path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    if path is None and cfg.mode == "train":
        path = find_resumable(output_dir)
        if path is not None:
            log.warning("this run directory already holds %s: resuming from it (a requeued job)", path)
    with open_dict(cfg):
        cfg.ckpt_path = None if path is None else str(path)
    if path is None:
        return cfg
    state = checkpoint_for(path, MODE_PURPOSE[str(cfg.mode)])
    check_checkpoint_matches(state, path, OmegaConf.to_container(cfg, resolve=True))  # the weights: once built
    if cfg.mode == "train":
        run_id = (state.get(METADATA_KEY) or {}).get("wandb_run_id")
        for node in (cfg.get("logger") or {}).values():
            if isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("WandbLogger") \
                    and run_id and not node.get("id"):
                with open_dict(node):  # the same W&B run: its curves continue from the restored step
                    node.id = str(run_id)
                    node.resume = "allow"
    return cfg


def _check_checkpoint(cfg: DictConfig, module: torch.nn.Module) -> None:
    """Refuses ``cfg.ckpt_path`` if it was written by another task or model (before Lightning loads it)."""
    if cfg.get("ckpt_path"):
        path = str(cfg.ckpt_path)
        check_checkpoint_matches(read_checkpoint(path), path, OmegaConf.to_container(cfg, resolve=True), module)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits (resuming from ``ckpt_path`` when set), then tests the best checkpoint (or the last weights when none
    was saved). Returns all metrics."""
    datamodule = _build(cfg, cfg.task.datamodule)
    module = _build(cfg, cfg.task.module)
    _check_checkpoint(cfg, module)
    trainer, _ = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    metrics = _scalar_metrics(trainer.callback_metrics)
    # every rank must test the same weights: rank 0's choice (the only rank that wrote checkpoints) is everyone's
    best = trainer.strategy.broadcast(getattr(trainer.checkpoint_callback, "best_model_path", "") or None)
    best_score = getattr(trainer.checkpoint_callback, "best_model_score", None)
    if best_score is not None:  # named after what the checkpoint ranked by (a task may fall back to another metric)
        monitor = getattr(trainer.checkpoint_callback, "monitor", None) or cfg.optimized_metric
        metrics[f"best/{monitor}"] = float(best_score)
    # checkpoints hold tensors and plain values only, so they load with weights_only=True (no arbitrary unpickling)
    trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
    metrics.update(_scalar_metrics(trainer.callback_metrics))
    return metrics


def test(cfg: DictConfig) -> dict[str, float]:
    """Evaluates ``ckpt_path`` on the test split."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("mode=test needs ckpt_path=<checkpoint file>")
    datamodule = _build(cfg, cfg.task.datamodule)
    module = _build(cfg, cfg.task.module)
    _check_checkpoint(cfg, module)
    trainer, _ = build_trainer(cfg)
    trainer.test(module, datamodule=datamodule, ckpt_path=str(cfg.ckpt_path), weights_only=True)
    return _scalar_metrics(trainer.callback_metrics)


def _trained_module(cfg: DictConfig) -> torch.nn.Module:
    """The task's module with the weights of ``ckpt_path`` (checked against the config first); without a
    checkpoint, the untrained module (with a warning)."""
    module = _build(cfg, cfg.task.module)
    if cfg.get("ckpt_path"):
        from evframe.utils.checkpoint import load_module_weights

        _check_checkpoint(cfg, module)
        load_module_weights(module, str(cfg.ckpt_path))
    else:
        log.warning("mode=%s without ckpt_path: using an untrained model", cfg.mode)
    return module


def predict(cfg: DictConfig) -> dict[str, float]:
    """Runs the task's predict function (e.g. flow videos) with the module loaded from ``ckpt_path``."""
    written = _build(cfg, cfg.task.predict, module=_trained_module(cfg))
    log.info("predictions written: %s", written)
    return {}


def export(cfg: DictConfig) -> dict[str, float]:
    """Runs the task's export function (detection: TorchScript model + JSON) on the module loaded from
    ``ckpt_path``."""
    if not cfg.task.get("export"):
        raise ConfigError(f"mode=export: task '{cfg.task.get('name')}' has no export (no task.export config)")
    written = _build(cfg, cfg.task.export, lightning_model=_trained_module(cfg))
    log.info("exported: %s", written)
    return {}


def finish_wandb(failed: bool) -> None:
    """Closes the W&B run if one is open (always, also when the run failed, so offline files are complete)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def cpu_processes_per_node(trainer_cfg: DictConfig) -> int:
    """How many training processes share this machine's cores: ``devices`` for a CPU run with several devices
    (``trainer=ddp_sim``), else 1."""
    devices = trainer_cfg.get("devices")
    if str(trainer_cfg.get("accelerator")) == "cpu" and isinstance(devices, int) and devices > 1:
        return devices
    return 1


def configure_threads(cfg: DictConfig) -> int:
    """Sets torch's CPU thread count to ``num_threads`` when given; else, when several CPU processes train on this
    machine, to its cores divided among them (they would otherwise each take all of them); returns the count."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    elif (processes := cpu_processes_per_node(cfg.trainer)) > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    return torch.get_num_threads()


#: environment variables Lightning's DDP launcher sets in the launching process
DDP_LAUNCH_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def release_distributed(environment: dict[str, str | None]) -> None:
    """After a job: destroys its process group and restores the DDP variables as they were before it, so that the
    next job of a sweep in this process starts its own rank processes (with ``LOCAL_RANK`` left set, Lightning would
    take them for processes started by someone else and wait for them forever)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def returned_metric(metrics: dict[str, float], cfg: DictConfig) -> float | None:
    """The value a run returns to sweepers: ``best/<optimized_metric>`` (the checkpoint's best score), else its last
    value. When the run never logged it (the flow task on recordings without labels), the same for
    ``optimized_metric_fallback``, negated when ``optimized_metric_fallback_mode`` differs from
    ``optimized_metric_mode`` so that the sweeper's direction still holds. None when absent or NaN."""
    value = metrics.get(f"best/{cfg.optimized_metric}", metrics.get(str(cfg.optimized_metric)))
    fallback = cfg.get("optimized_metric_fallback")
    if value is None and fallback:
        value = metrics.get(f"best/{fallback}", metrics.get(str(fallback)))
        if value is not None and cfg.get("optimized_metric_fallback_mode", "min") != cfg.optimized_metric_mode:
            value = -value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def run(cfg: DictConfig) -> float | None:
    """Prepares the config, runs ``cfg.mode`` and returns ``cfg.optimized_metric`` (for sweepers), or None."""
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode} is not one of {MODES}")
    cfg = prepare_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    primary = is_primary_process()  # under DDP only global rank 0 writes the run directory's files
    cfg = prepare_checkpoint(cfg)
    if primary:
        print_and_save_config(cfg, output_dir, show=bool(cfg.get("print_config", True)))
        announce_sweep_job(output_dir)  # DDP rank processes of a sweep job must run this job, here
    L.seed_everything(int(cfg.seed), workers=True)
    log.info("torch CPU threads: %d", configure_threads(cfg))
    environment = {key: os.environ.get(key) for key in DDP_LAUNCH_ENV}
    failed = True
    try:
        metrics = {"train": train, "test": test, "predict": predict, "export": export}[cfg.mode](cfg)
        failed = False
    except SIGTERMException as err:
        # Lightning stopped after the current batch; InterruptCheckpoint saved checkpoints/interrupted.ckpt
        log.warning("stopped by SIGTERM; the checkpoint in %s resumes it (ckpt_path=last, or a requeued job in the "
                    "same directory)", output_dir / "checkpoints")
        raise SystemExit(128 + signal.SIGTERM) from err
    finally:
        finish_wandb(failed)
        release_distributed(environment)
    if primary:
        with open(output_dir / "metrics.json", "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
    return returned_metric(metrics, cfg)
