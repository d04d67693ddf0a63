"""Callbacks the lifecycle tests put into runs of ``python -m evframe.run`` (``allowed_targets=[lifecycle_helpers]``).

They live in a module of their own so that a subprocess can import them (``PYTHONPATH`` includes this folder).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L


class SignalAt(L.Callback):
    """Sends ``signal_name`` to its own process at the start of training batch ``batch`` of epoch ``epoch``
    (global rank 0 only): a deterministic "killed mid-epoch"."""

    def __init__(self, epoch: int, batch: int, signal_name: str = "SIGKILL") -> None:
        self.epoch, self.batch, self.signal_name = int(epoch), int(batch), signal_name

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch and trainer.is_global_zero:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


class RecordBatches(L.Callback):
    """Appends one JSON line per training batch to ``path``: epoch, batch index, global rank, the recordings and
    start times of every slot and ``mask_keep_memory`` — what each process was fed, for the tests to compare."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        slots = [[Path(md.path).name if not md.is_padding() else None, int(start)]
                 for md, start, _ in batch["video_infos"]]
        line = {"epoch": trainer.current_epoch, "batch": batch_idx, "rank": trainer.global_rank, "slots": slots,
                "keep": [float(v) for v in batch["mask_keep_memory"]],
                "input_sum": float(batch["inputs"].double().sum())}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


def run_dirs(root: Path, task: str = "flow", kind: str = "runs") -> list[Path]:
    """Run directories under ``root/outputs/<task>/<kind>``, oldest first (their names start with a time stamp)."""
    base = root / "outputs" / task / kind
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def read_batches(path: Path) -> list[dict]:
    """The lines :class:`RecordBatches` wrote."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
