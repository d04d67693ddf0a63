"""Prints the resolved config as a rich tree and saves it with the run."""

from __future__ import annotations

from pathlib import Path

import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

#: top-level groups shown first, in this order; the rest follow alphabetically
FIRST = ("mode", "task", "dataset", "preprocess", "model", "loss", "trainer", "callbacks", "logger", "paths")


def config_tree(cfg: DictConfig) -> rich.tree.Tree:
    """A rich Tree with one branch per top-level key, each holding that node's YAML."""
    tree = rich.tree.Tree("CONFIG", style="bold", guide_style="dim")
    keys = [k for k in FIRST if k in cfg] + sorted(k for k in cfg if k not in FIRST)
    for key in keys:
        branch = tree.add(str(key), style="bold")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    return tree


def print_and_save_config(cfg: DictConfig, output_dir: str | Path, show: bool = True) -> None:
    """Prints the tree (when ``show``) and writes ``config_tree.log`` and the resolved ``config.yaml``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tree = config_tree(cfg)
    if show:
        Console().print(tree)
    with open(output_dir / "config_tree.log", "w") as f:
        Console(file=f, width=120, color_system=None).print(tree)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
