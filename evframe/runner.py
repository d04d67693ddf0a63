"""What a run does once the config is composed: build the task's components and train, test or predict.

Every component comes from config through :func:`evframe.config.instantiate` (allow-listed ``_target_``s).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from evframe.config import instantiate
from evframe.config.prepare import ConfigError, prepare_config
from evframe.utils.config_tree import print_and_save_config

log = logging.getLogger(__name__)
MODES = ("train", "test", "predict")


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


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits, then tests the best checkpoint (or the last weights when none was saved). Returns all metrics."""
    datamodule = _build(cfg, cfg.task.datamodule)
    module = _build(cfg, cfg.task.module)
    trainer, _ = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    metrics = _scalar_metrics(trainer.callback_metrics)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    best_score = getattr(trainer.checkpoint_callback, "best_model_score", None)
    if best_score is not None:
        metrics[f"best/{cfg.optimized_metric}"] = float(best_score)
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
    trainer, _ = build_trainer(cfg)
    trainer.test(module, datamodule=datamodule, ckpt_path=str(cfg.ckpt_path), weights_only=True)
    return _scalar_metrics(trainer.callback_metrics)


def predict(cfg: DictConfig) -> dict[str, float]:
    """Runs the task's predict function (e.g. flow videos) with the module loaded from ``ckpt_path``."""
    module = _build(cfg, cfg.task.module)
    if cfg.get("ckpt_path"):
        from evframe.utils.checkpoint import load_module_weights

        load_module_weights(module, str(cfg.ckpt_path))
    else:
        log.warning("mode=predict without ckpt_path: predicting with an untrained model")
    written = _build(cfg, cfg.task.predict, module=module)
    log.info("predictions written: %s", written)
    return {}


def finish_wandb(failed: bool) -> None:
    """Closes the W&B run if one is open (always, also when the run failed, so offline files are complete)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def configure_threads(cfg: DictConfig) -> int:
    """Sets torch's CPU thread count to ``num_threads`` when given (else torch's default); returns the count."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    return torch.get_num_threads()


def run(cfg: DictConfig) -> float | None:
    """Prepares the config, runs ``cfg.mode`` and returns ``cfg.optimized_metric`` (for sweepers), or None."""
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode} is not one of {MODES}")
    cfg = prepare_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    print_and_save_config(cfg, output_dir, show=bool(cfg.get("print_config", True)))
    L.seed_everything(int(cfg.seed), workers=True)
    log.info("torch CPU threads: %d", configure_threads(cfg))
    failed = True
    try:
        metrics = {"train": train, "test": test, "predict": predict}[cfg.mode](cfg)
        failed = False
    finally:
        finish_wandb(failed)
    with open(output_dir / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    value = metrics.get(f"best/{cfg.optimized_metric}", metrics.get(str(cfg.optimized_metric)))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)
