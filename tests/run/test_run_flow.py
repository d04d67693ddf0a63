"""The entrypoint end to end on the tiny synthetic dataset: train/val/test, loggers, seeds, modes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from run_helpers import read_metrics, run_dirs

pytestmark = pytest.mark.slow


def test_fdr_smoke_run_trains_validates_tests_and_saves_config(run_evframe, tmp_path: Path) -> None:
    run_evframe("debug=fdr", "logger=csv")
    (run,) = run_dirs(tmp_path)
    assert (run / "config.yaml").is_file() and (run / "config_tree.log").is_file()
    assert "model" in (run / "config_tree.log").read_text()
    metrics = read_metrics(run)
    assert math.isfinite(metrics["train/loss_step"]) if "train/loss_step" in metrics else True
    assert math.isfinite(metrics["test/aee"]) and math.isfinite(metrics["test/aee_zero"])
    assert metrics["test/aee_zero"] > 0


def _loss_curve(run: Path) -> list[float]:
    with open(run / "csv" / "metrics.csv") as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


def test_same_seed_same_loss_curve(run_evframe, tmp_path: Path) -> None:
    for _ in range(2):
        # 3 epochs: the curriculum plays one-batch chunks first, so the tiny set gives 1, 1, then 2 batches
        run_evframe("debug=limit", "logger=csv", "seed=7", "trainer.log_every_n_steps=1", "trainer.max_epochs=3")
    first, second = run_dirs(tmp_path)
    assert first != second  # run directories never collide
    curve = _loss_curve(first)
    assert len(curve) >= 3
    assert curve == _loss_curve(second)


def test_mode_test_reproduces_the_logged_test_metrics_and_predict_writes_videos(run_evframe, tmp_path: Path,
                                                                                  shared_data_dir: Path) -> None:
    run_evframe("debug=limit", "logger=csv", "callbacks.flow.video_result_every_n_epochs=1")
    (run,) = run_dirs(tmp_path)
    assert list((run / "videos").glob("flow_epoch*.mp4")), "FlowCallback wrote no video"
    ckpts = sorted((run / "checkpoints").glob("epoch*.ckpt"))
    assert ckpts, "no best checkpoint saved"
    trained = read_metrics(run)
    run_evframe("debug=limit", "logger=csv", "mode=test", f"ckpt_path={ckpts[-1]}")
    tested = read_metrics(run_dirs(tmp_path)[-1])
    assert tested["test/aee"] == pytest.approx(trained["test/aee"], rel=1e-5)

    recording = sorted((shared_data_dir).glob("synthetic_tiny_seed0/test/*_td.dat"))[0]
    run_evframe("debug=limit", "logger=none", "mode=predict", f"ckpt_path={ckpts[-1]}",
                f"task.predict.paths=[{recording}]")
    videos = list(run_dirs(tmp_path)[-1].glob("predictions/*_flow.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_wandb_offline_run_leaves_its_files_in_the_run_directory(run_evframe, tmp_path: Path) -> None:
    # not debug=fdr: Lightning's fast_dev_run replaces loggers by a dummy
    run_evframe("debug=limit", "trainer.max_epochs=1", "logger=wandb", "callbacks.flow.video_result_every_n_epochs=1")
    (run,) = run_dirs(tmp_path)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline and any(offline[0].glob("*.wandb"))
    # the callback's flow video went to W&B too (a copy in the offline run's media), beside the run's own file
    assert list((run / "videos").glob("*.mp4"))
    logged = list(offline[0].glob("files/media/videos/**/*.mp4"))
    assert logged and logged[0].stat().st_size > 1000


def test_tensorboard_logger_writes_events(run_evframe, tmp_path: Path) -> None:
    run_evframe("debug=limit", "trainer.max_epochs=1", "logger=tensorboard")
    (run,) = run_dirs(tmp_path)
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))


def test_multirun_grid_gives_each_job_its_directory_and_a_failing_job_keeps_the_others(run_evframe,
                                                                                        tmp_path: Path) -> None:
    out = run_evframe("--multirun", "debug=fdr", "logger=csv", "loss.weights.smoothness=0.1,0.5",
                      "model.depth=1,0", check=False)
    (sweep,) = run_dirs(tmp_path, kind="multiruns")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    finished = [j for j in jobs if (j / "metrics.json").is_file()]
    assert len(finished) == 2  # the depth=0 jobs fail (midinet2 needs depth >= 1), the others keep their results
    assert out.returncode != 0 and "depth" in out.stderr


def test_optuna_search_returns_the_validation_metric(run_evframe, tmp_path: Path) -> None:
    run_evframe("hparams_search=flow_optuna", "debug=limit", "logger=csv", "hydra.sweeper.n_trials=2",
                "hydra.sweeper.sampler.n_startup_trials=2")
    (sweep,) = run_dirs(tmp_path, kind="multiruns")
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in results and "best_value" in results
