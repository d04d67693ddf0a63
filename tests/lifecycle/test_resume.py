"""Run lifecycle end to end on the tiny synthetic dataset (CPU, fixed seed), in subprocesses:

A   uninterrupted run, 3 epochs of 4 batches;
B   the same run, SIGKILLed at the start of batch 2 of epoch 1 (mid-epoch; only the end-of-epoch-0 last.ckpt exists);
C   ``ckpt_path=last`` resumes B, then receives SIGTERM during batch 1 of epoch 2: it saves interrupted.ckpt and
    exits with 143;
D   the "requeued job": the same command in C's run directory, no ckpt_path; it resumes from interrupted.ckpt.

D must end with A's validation and test metrics, having been fed exactly A's batches, and keep B's W&B run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lifecycle_helpers import read_batches, run_dirs
from omegaconf import open_dict

from evframe.config import register_resolvers
from evframe.config.prepare import prepare_config
from evframe.run import CONFIG_DIR
from evframe.utils.checkpoint import CheckpointError, read_checkpoint

pytestmark = pytest.mark.slow

COMMON = ("debug=limit", "trainer.max_epochs=3", "trainer.limit_train_batches=null", "dataset.batch_size=1",
          "logger=wandb", "seed=5")


def _record(path: Path) -> str:
    return f"+callbacks.record={{_target_:lifecycle_helpers.RecordBatches,path:'{path}'}}"


def _signal(epoch: int, batch: int, name: str) -> str:
    return f"+callbacks.stop={{_target_:lifecycle_helpers.SignalAt,epoch:{epoch},batch:{batch},signal_name:{name}}}"


@pytest.fixture(scope="module")
def lifecycle(module_root: Path, evframe_runner) -> dict:
    root = module_root
    out = {"root": root}
    evframe_runner(root, *COMMON, _record(root / "a.jsonl"))
    out["A"] = run_dirs(root)[-1]
    killed = evframe_runner(root, *COMMON, _record(root / "b.jsonl"), _signal(1, 2, "SIGKILL"), check=False)
    out["B"], out["B_rc"] = run_dirs(root)[-1], killed.returncode
    out["B_ckpt"] = read_checkpoint(out["B"] / "checkpoints" / "last.ckpt")
    stopped = evframe_runner(root, *COMMON, "ckpt_path=last", _record(root / "c.jsonl"), _signal(2, 1, "SIGTERM"),
                             check=False)
    out["C"], out["C_rc"], out["C_log"] = run_dirs(root)[-1], stopped.returncode, stopped.stderr
    interrupted = out["C"] / "checkpoints" / "interrupted.ckpt"
    out["C_interrupted"] = read_checkpoint(interrupted) if interrupted.is_file() else None
    evframe_runner(root, *COMMON, f"hydra.run.dir={out['C']}", _record(root / "d.jsonl"))
    out["D_interrupted_left"] = interrupted.exists()
    return out


def _metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())


def test_sigkill_mid_epoch_leaves_only_complete_checkpoints(lifecycle: dict) -> None:
    assert lifecycle["B_rc"] == -9
    assert not (lifecycle["B"] / "metrics.json").exists()  # it really died before the end
    assert lifecycle["B_ckpt"]["epoch"] == 0  # the end-of-epoch-0 checkpoint, intact (it loads)
    assert lifecycle["B_ckpt"]["evframe"]["config"]["model"]["_target_"].endswith("midinet2")
    assert sorted(p.name for p in (lifecycle["B"] / "checkpoints").iterdir() if p.name.startswith("."))  == []


def test_sigterm_saves_a_mid_epoch_checkpoint_and_exits_143(lifecycle: dict) -> None:
    assert lifecycle["C_rc"] == 143, lifecycle["C_log"][-3000:]
    state = lifecycle["C_interrupted"]
    assert state is not None, "no interrupted.ckpt after SIGTERM"
    assert state["epoch"] == 2 and state["global_step"] == 10  # stopped after batch 1 of epoch 2 (4 per epoch)
    (loader_state,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["batches_consumed"] == 2 and loader_state["num_batches"] == 4
    # the requeued job resumed from it, and the normal end of that run removed it
    assert not lifecycle["D_interrupted_left"]


def test_resumed_runs_play_exactly_the_batches_of_the_uninterrupted_run(lifecycle: dict) -> None:
    root = lifecycle["root"]
    key = [(b["epoch"], b["batch"], tuple(map(tuple, b["slots"])), round(b["input_sum"], 6))
           for b in read_batches(root / "a.jsonl")]
    assert len(key) == 12
    b, c, d = (read_batches(root / f"{x}.jsonl") for x in "bcd")
    assert len(b) == 7 and len(c) == 6 and len(d) == 2  # B died in batch 6; C restarted epoch 1; D epoch 2 batch 2
    resumed = [(x["epoch"], x["batch"], tuple(map(tuple, x["slots"])), round(x["input_sum"], 6))
               for x in b[:4] + c + d]
    assert resumed == key
    assert d[0]["keep"] == [0.0]  # resumed mid-epoch: the recurrent state starts afresh


def test_resumed_run_reaches_the_metrics_of_the_uninterrupted_run(lifecycle: dict) -> None:
    full, resumed = _metrics(lifecycle["A"]), _metrics(lifecycle["C"])
    compared = [k for k in full if k.startswith(("val/", "test/", "best/"))]
    assert "test/aee" in compared and "best/val/aee" in compared
    for key in compared:
        assert resumed[key] == pytest.approx(full[key], rel=1e-4, abs=1e-6), key


def test_wandb_run_id_is_kept_across_resumes(lifecycle: dict) -> None:
    def ids(run: Path) -> set[str]:
        return {p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}

    first = ids(lifecycle["B"])
    assert len(first) == 1
    assert ids(lifecycle["C"]) == first  # C and D (same directory) logged to B's run: its curves continue
    assert len(list((lifecycle["C"] / "wandb").glob("offline-run-*"))) == 2
    assert lifecycle["B_ckpt"]["evframe"]["wandb_run_id"] == next(iter(first))


def _compose(tmp_path: Path, data_dir: Path, *overrides: str):
    """The config a run with ``overrides`` would use, composed in this process (outputs under ``tmp_path``)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*COMMON[:4], "logger=none", "print_config=false", *overrides])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(data_dir)
    return prepare_config(cfg)


def test_mode_test_gives_the_test_metrics_logged_at_the_end_of_training(lifecycle: dict, tmp_path: Path,
                                                                          lifecycle_data_dir: Path) -> None:
    from evframe import runner

    (best,) = (lifecycle["A"] / "checkpoints").glob("epoch*.ckpt")
    cfg = runner.prepare_checkpoint(_compose(tmp_path, lifecycle_data_dir, "mode=test", f"ckpt_path={best}"))
    tested, trained = runner.test(cfg), _metrics(lifecycle["A"])
    test_keys = [k for k in trained if k.startswith("test/")]
    assert test_keys
    for key in test_keys:
        assert tested[key] == pytest.approx(trained[key], rel=1e-6), key


def test_checkpoint_of_another_model_is_refused_listing_the_differences(lifecycle: dict, tmp_path: Path) -> None:
    """``model=eminet mode=test ckpt_path=<A's midinet2 checkpoint>`` fails before anything is loaded."""
    from evframe import runner

    ckpt = lifecycle["A"] / "checkpoints" / "last.ckpt"
    cfg = _compose(tmp_path, tmp_path / "unused", "model=eminet", "mode=test", f"ckpt_path={ckpt}")
    with pytest.raises(CheckpointError) as err:  # at start, where ckpt_path is resolved
        runner.prepare_checkpoint(cfg)
    message = str(err.value)
    assert "another task or model" in message and "last.ckpt" in message
    assert "model._target_: checkpoint 'evframe.tasks.flow.feature_extractors.midinet2', config " \
           "'evframe.tasks.flow.feature_extractors.eminet'" in message
