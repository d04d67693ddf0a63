"""Training from precomputed HDF5 tensors: precompute CLI -> `dataset=folder` -> the same flow task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import read_metrics, run_dirs

from evframe.data.synthetic import ensure_dataset

pytestmark = pytest.mark.slow


def test_precomputed_hdf5_folder_trains_and_tests(run_evframe, tmp_path: Path, shared_data_dir: Path) -> None:
    events_root = ensure_dataset(shared_data_dir / "synthetic_tiny_seed0", preset="tiny", seed=0)
    tensors = tmp_path / "tensors"
    subprocess.run([sys.executable, "-m", "evframe.preprocess.precompute", str(events_root), str(tensors),
                    "--preprocess", "event_cube", "--delta-t", "50000", "--downsample", "1",
                    "--kwarg", "num_utbins=3", "--kwarg", "split_polarity=true", "--kwarg", "max_incr_per_pixel=5"],
                   check=True, capture_output=True, timeout=300)
    assert sorted(p.name for p in (tensors / "test").glob("*.h5") if "_flow" not in p.name)
    assert list((tensors / "test").glob("*_flow.h5")), "flow labels were not copied beside the tensors"

    run_evframe("dataset=folder", f"dataset.root={tensors}", "debug=fdr", "logger=csv")
    (run,) = run_dirs(tmp_path)
    metrics = read_metrics(run)
    assert metrics["test/aee_zero"] > 0  # the flow labels were found and used
