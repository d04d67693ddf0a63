"""Hydra launchers: the SLURM submission (submitit) a config produces, and a local parallel sweep with joblib."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import hydra
import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lifecycle_helpers import run_dirs
from omegaconf import OmegaConf

from evframe.config import register_resolvers
from evframe.run import CONFIG_DIR

FAKE_SBATCH = """#!/bin/sh
# stands in for SLURM's sbatch: keeps the submission script and answers as sbatch does
cp "$1" "{capture}/submission_$(ls {capture} | wc -l).sh"
echo "Submitted batch job 4242"
"""


def _fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts an ``sbatch`` that records scripts and an ``srun`` (submitit checks it exists) first on PATH."""
    bin_dir, capture = tmp_path / "bin", tmp_path / "captured"
    bin_dir.mkdir()
    capture.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(capture=capture)), ("srun", "#!/bin/sh\nexit 0\n")):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return capture


def _sbatch_options(script: str) -> dict[str, str]:
    options = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --"):].partition("=")
            options[key] = value
    return options


def test_slurm_launcher_submits_the_multi_node_job_the_config_describes(tmp_path: Path, monkeypatch) -> None:
    """``experiment=ddp_slurm`` (2 nodes x 4 GPUs) swept over two seeds: the launcher Hydra builds from the config
    writes one sbatch array script whose options are the config's; a fake sbatch receives it (no cluster here)."""
    capture = _fake_slurm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)  # outputs/ go under the directory the command is started from
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=ddp_slurm", "hydra.launcher.account=vision",
                                           "hydra.launcher.timeout_min=90"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.trainer.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
    HydraConfig.instance().set_config(cfg)  # as in the process that launches a sweep

    launcher = hydra.utils.instantiate(cfg.hydra.launcher)  # what Hydra does with hydra.launcher
    launcher.setup(hydra_context=None, task_function=lambda job_cfg: None, config=cfg)
    monkeypatch.setattr(submitit.core.core.Job, "results", lambda job: ["not run: no cluster"])
    launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0)

    (script_path,) = capture.glob("submission_*.sh")
    script = script_path.read_text()
    options = _sbatch_options(script)
    expected = {"nodes": "2", "ntasks-per-node": "4", "gpus-per-node": "4", "cpus-per-task": "6", "mem": "160GB",
                "time": "90", "partition": "gpu", "account": "vision", "signal": "USR2@120",
                "job-name": "evframe-flow", "array": "0-1%2"}
    assert {k: options.get(k) for k in expected} == expected, script
    assert "exclusive" in options
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    assert sweep_dir.parent == tmp_path / "outputs" / "flow" / "multiruns" and sweep_dir.is_dir()
    assert f"--output {sweep_dir}/.submitit/%A_%a/%A_%a_%t_log.out" in script
    assert "srun" in script and "submitit.core._submit" in script
    # requeue on time-out: submitit resubmits up to max_num_timeout times into the same job directory
    assert launcher.params["max_num_timeout"] == 3


@pytest.mark.slow
def test_joblib_launcher_runs_a_two_job_sweep_in_parallel_processes(module_root: Path, evframe_runner) -> None:
    root = module_root / "joblib"
    root.mkdir()
    evframe_runner(root, "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "num_threads=1",
                   "debug=fdr", "logger=csv", "seed=1,2")
    (sweep,) = run_dirs(root, kind="multiruns")  # both jobs (other processes) agree on one sweep directory
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    seeds = []
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["test/aee_zero"] > 0
        seeds.append(OmegaConf.load(job / "config.yaml").seed)
    assert sorted(seeds) == [1, 2]


def _launcher_config(*overrides: str):
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg.hydra.launcher


def test_slurm_resources_follow_the_trainer_and_refuse_an_uncountable_device_number() -> None:
    cpu = _launcher_config("trainer=ddp_sim")
    assert (cpu.nodes, cpu.tasks_per_node, cpu.gpus_per_node) == (1, 2, 0)  # CPU processes ask for no GPU
    gpu = _launcher_config("trainer=ddp", "trainer.devices=8", "trainer.num_nodes=3")
    assert (gpu.nodes, gpu.tasks_per_node, gpu.gpus_per_node) == (3, 8, 8)
    with pytest.raises(Exception, match="needs trainer.devices as a number of devices per node .* got 'auto'"):
        _ = _launcher_config("trainer=ddp").tasks_per_node  # trainer=ddp alone says devices: auto
