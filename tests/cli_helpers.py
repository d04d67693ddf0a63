"""Running ``python -m evframe.run`` in a subprocess as a user would: from the directory the outputs belong to,
with only the overrides the test is about."""

from __future__ import annotations

from pathlib import Path


def share_dataset_cache(cwd: Path, cache: Path) -> None:
    """Makes ``cwd/outputs/datasets`` (where runs started in ``cwd`` cache generated datasets) the folder ``cache``,
    so that the runs of one pytest session generate each synthetic dataset once, with no override on their command."""
    link = cwd / "outputs" / "datasets"
    if link.is_symlink() or link.exists():
        return
    cache.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(cache, target_is_directory=True)
