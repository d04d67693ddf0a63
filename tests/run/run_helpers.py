"""Reading what a run left in its directory."""

from __future__ import annotations

import json
from pathlib import Path


def run_dirs(root: Path, task: str = "flow", kind: str = "runs") -> list[Path]:
    base = root / "outputs" / task / kind
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())
