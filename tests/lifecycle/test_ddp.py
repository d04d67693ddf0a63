"""``trainer=ddp_sim``: 2 CPU processes on gloo, end to end on the tiny synthetic dataset.

Training: one run directory written by rank 0 only; each rank plays its own recordings with as many batches as the
other. Evaluation: the flow metrics (torchmetrics sums reduced over ranks) of a 2-process test equal those of a
1-process test of the same checkpoint on the same recordings; the recordings run over several batches with the
recurrent memory carried along, so any mix-up of streams or memory between processes would change them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from lifecycle_helpers import read_batches, run_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(module_root: Path, evframe_runner) -> Path:
    root = module_root / "ddp"
    root.mkdir()
    record = f"+callbacks.record={{_target_:lifecycle_helpers.RecordBatches,path:'{root / 'batches.jsonl'}'}}"
    evframe_runner(root, "debug=limit", "trainer=ddp_sim", "trainer.max_epochs=2", "trainer.limit_train_batches=null",
                   "dataset.batch_size=1", "logger=csv", "seed=5", record)
    return root


def test_one_run_directory_written_by_global_rank_zero_only(ddp_run: Path) -> None:
    (run,) = run_dirs(ddp_run)  # the rank-1 process did not make a directory of its own
    log = (run / "run.log").read_text()
    assert "GLOBAL_RANK: 0" in log and "GLOBAL_RANK: 1" not in log  # rank 1 logged to /dev/null
    for name in ("config.yaml", "config_tree.log", "metrics.json", ".hydra/config.yaml", "csv/metrics.csv",
                 "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoints").glob("epoch*.ckpt"))) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/aee_zero"] > 0 and "val/aee" in metrics


def test_ranks_play_disjoint_recordings_with_equal_batch_counts(ddp_run: Path) -> None:
    batches = read_batches(ddp_run / "batches.jsonl")
    assert {b["rank"] for b in batches} == {0, 1}
    counts = Counter((b["epoch"], b["rank"]) for b in batches)
    for epoch in (0, 1):
        assert counts[(epoch, 0)] == counts[(epoch, 1)] > 0  # same number of batches: no rank waits for another
        owners: dict[str, set[int]] = {}
        played = Counter()
        for b in (b for b in batches if b["epoch"] == epoch):
            for name, start in b["slots"]:
                if name is not None:
                    owners.setdefault(name, set()).add(b["rank"])
                    played[(name, start)] += 1
        assert sorted(owners) == ["synth_train_000_td.dat", "synth_train_001_td.dat"]
        assert all(len(ranks) == 1 for ranks in owners.values()), owners  # each stream on exactly one process
        assert set(played.values()) == {1}  # every batch of every recording exactly once


def test_metrics_over_all_ranks_equal_a_single_process_run(ddp_run: Path, evframe_runner,
                                                           lifecycle_data_dir: Path) -> None:
    # 4 recordings with flow labels (every split of the tiny set) as one test folder: 2 per rank under DDP
    folder = ddp_run / "all_recordings" / "test"
    folder.mkdir(parents=True)
    for path in sorted((lifecycle_data_dir / "synthetic_tiny_seed0").glob("*/*")):
        if path.name.endswith(("_td.dat", "_flow.h5")):
            (folder / path.name).symlink_to(path)
    assert len(list(folder.glob("*_td.dat"))) == 4
    (run,) = run_dirs(ddp_run)
    common = ("mode=test", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "dataset=folder",
              f"dataset.root={folder.parent}", "dataset.batch_size=2", "dataset.num_workers=0", "logger=none")
    results = {}
    for trainer in ("cpu", "ddp_sim"):
        root = ddp_run / f"test_{trainer}"
        root.mkdir()
        evframe_runner(root, *common, f"trainer={trainer}")
        (test_run,) = run_dirs(root)
        results[trainer] = json.loads((test_run / "metrics.json").read_text())
    single, ddp = results["cpu"], results["ddp_sim"]
    keys = [k for k in single if k.startswith("test/")]
    assert {"test/aee", "test/aee_zero", "test/outlier_pct"} <= set(keys)
    for key in keys:
        assert ddp[key] == pytest.approx(single[key], rel=1e-6, abs=1e-9), key


def test_a_sweep_of_ddp_jobs_runs_each_job_with_its_rank_processes_in_its_directory(module_root: Path,
                                                                                  evframe_runner) -> None:
    """Lightning starts rank 1 by running the command again; in a sweep that command is the whole --multirun.
    Each job's rank-1 process must instead run that job, in that job's directory, and the next job start anew."""
    root = module_root / "ddp_sweep"
    root.mkdir()
    record = "+callbacks.record={_target_:lifecycle_helpers.RecordBatches,path:'${paths.output_dir}/batches.jsonl'}"
    evframe_runner(root, "--multirun", "trainer=ddp_sim", "debug=fdr", "logger=csv", "seed=1,2", record)
    assert run_dirs(root) == []  # no rank process ran a single run of its own
    (sweep,) = run_dirs(root, kind="multiruns")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "metrics.json").is_file()
        assert {b["rank"] for b in read_batches(job / "batches.jsonl")} == {0, 1}


def test_detection_trained_and_tested_on_two_ranks_scores_the_union_of_their_boxes(module_root: Path, evframe_runner,
                                                                          lifecycle_data_dir: Path) -> None:
    """Every recording of the tiny set as one test folder (2 per rank under DDP): COCO scores the union of both
    ranks' boxes, so the 2-process test of a checkpoint gives the 1-process metrics, not those of one rank's share."""
    root = module_root / "ddp_detection"
    root.mkdir()
    source = lifecycle_data_dir / "synthetic_tiny_seed0"
    # trained with 2 processes too: validation gathers both ranks' boxes during the fit
    evframe_runner(root, "task=detection", "trainer=ddp_sim", "debug=limit", "trainer.max_epochs=1", "logger=none",
                   "seed=3")
    (run,) = run_dirs(root, task="detection")
    folder = root / "all_recordings" / "test"
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*/*")):
        if path.name.endswith(("_td.dat", "_bbox.npy")):
            (folder / path.name).symlink_to(path)
    (folder.parent / "label_map_dictionary.json").symlink_to(source / "label_map_dictionary.json")
    common = ("task=detection", "mode=test", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "dataset=folder",
              f"dataset.root={folder.parent}", "dataset.batch_size=2", "dataset.num_workers=0", "logger=none",
              "task.module.score_thresh=0.01")
    results = {}
    for trainer in ("cpu", "ddp_sim"):
        out = root / f"test_{trainer}"
        out.mkdir()
        evframe_runner(out, *common, f"trainer={trainer}")
        (test_run,) = run_dirs(out, task="detection")
        results[trainer] = json.loads((test_run / "metrics.json").read_text())
    single, ddp = results["cpu"], results["ddp_sim"]
    keys = [k for k in single if k.startswith("test/mAP")]
    assert len(keys) == 6 and single["test/mAP_50"] >= 0  # there is ground truth to score
    for key in keys:
        assert ddp[key] == pytest.approx(single[key], abs=1e-9), key


def test_event_to_video_trained_with_two_processes_tests_as_one_process_does(module_root: Path,
                                                                               evframe_runner) -> None:
    """e2v under DDP: each rank trains on its own clips; the test metrics of the checkpoint (clips and synthetic
    recordings, torchmetrics sums reduced over ranks) are those of a 1-process test."""
    root = module_root / "ddp_e2v"
    root.mkdir()
    evframe_runner(root, "task=e2v", "trainer=ddp_sim", "debug=limit", "trainer.max_epochs=1", "logger=csv")
    (run,) = run_dirs(root, task="e2v")
    trained = json.loads((run / "metrics.json").read_text())
    assert 0 < trained["test/clips/mse"] < 1 and -1 <= trained["test/clips/ssim"] <= 1
    results = {}
    for trainer in ("cpu", "ddp_sim"):
        out = root / f"test_{trainer}"
        out.mkdir()
        evframe_runner(out, "task=e2v", "debug=limit", "mode=test", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                       "logger=none", f"trainer={trainer}")
        (test_run,) = run_dirs(out, task="e2v")
        results[trainer] = json.loads((test_run / "metrics.json").read_text())
    keys = [k for k in results["cpu"] if k.startswith(("test/clips/", "test/synthetic/"))]
    assert len(keys) == 8
    for key in keys:
        assert results["ddp_sim"][key] == pytest.approx(results["cpu"][key], rel=1e-5, abs=1e-7), key
