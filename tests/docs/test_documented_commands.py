"""Every ``python -m evframe.run ...`` command of the documentation runs as typed.

Each command is run from a fresh, empty working directory with nothing added but a debug preset (``debug=fdr``
where the command names none). Placeholders a reader replaces (``<stamp>``, ``ckpt_path=...``, ``/data/...``,
``/rec/...``, the example recordings) are replaced by fixtures of the same kind: a trained run of the command's
task copied under ``outputs/``, recordings in every format, a folder dataset, images, a video, a frame folder.
Commands that need GPUs run where there are enough of them; SLURM commands submit through a stand-in ``sbatch``
that runs the job script on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from doc_commands import DocCommand, documented_commands

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
COMMANDS = documented_commands([p for p in DOC_FILES if p.is_file()], REPO_ROOT)
TASKS = ("flow", "detection", "e2v")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` in {cwd} exited {out.returncode}:\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-6000:]}")
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Everything the placeholders stand for, made once: ``runs/<task>/<stamp>`` (a short trained run of each task,
    with checkpoints), ``data/`` (a folder dataset, images, a video, a frame folder), ``rec/`` (RAW EVT 3.0, RAW
    EVT 2.0 and HDF5 recordings), ``recordings/`` (DAT recordings) and ``user/`` (the extending example)."""
    from evframe.data.synthetic import ensure_dataset
    from evframe.io import load_events
    from evframe.io.hdf5_events import write_hdf5_events
    from evframe.io.raw_writer import write_raw

    root = tmp_path_factory.mktemp("doc_fixtures")
    dataset = ensure_dataset(root / "synthetic", preset="tiny", seed=0)
    data = root / "data"
    for name in ("my_recordings", "my_boxes"):
        shutil.copytree(dataset, data / name, ignore=shutil.ignore_patterns(".*", "*.lock"))

    dats = sorted((dataset / "test").glob("*_td.dat")) + sorted((dataset / "val").glob("*_td.dat"))
    (root / "recordings").mkdir()
    for i, dat in enumerate(dats[:2]):
        shutil.copy(dat, root / "recordings" / f"rec{i}_td.dat")
    events = load_events(dats[0])
    height, width = _geometry(dats[0])
    (root / "rec").mkdir()
    write_raw(root / "rec" / "a.raw", events, height, width, encoding="evt3")
    write_hdf5_events(root / "rec" / "b.hdf5", events, height, width)
    write_raw(root / "rec" / "c.raw", load_events(dats[1]), height, width, encoding="evt2")

    import cv2

    rng = np.random.default_rng(0)
    (data / "pictures").mkdir()
    for i in range(3):
        cv2.imwrite(str(data / "pictures" / f"img{i}.png"), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    writer = cv2.VideoWriter(str(data / "a.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (80, 60))
    for i in range(20):
        frame = np.full((60, 80, 3), 40, np.uint8)
        cv2.rectangle(frame, (5 + 2 * i, 10), (25 + 2 * i, 40), (220, 220, 220), -1)
        writer.write(frame)
    writer.release()
    ecd = data / "ecd" / "slider_depth"
    (ecd / "images").mkdir(parents=True)
    lines = []
    for i in range(12):
        frame = np.full((48, 64), 60, np.uint8)
        cv2.circle(frame, (10 + 3 * i, 24), 8, 230, -1)
        cv2.imwrite(str(ecd / "images" / f"frame_{i:08d}.png"), frame)
        lines.append(f"{i * 0.02:.6f} images/frame_{i:08d}.png")
    (ecd / "images.txt").write_text("\n".join(lines) + "\n")

    runs = root / "runs"
    for task in TASKS:
        work = root / f"train_{task}"
        work.mkdir()
        _run([sys.executable, "-m", "evframe.run", f"task={task}", "debug=limit"], work)
        (run_dir,) = (work / "outputs" / task / "runs").iterdir()
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        shutil.copytree(run_dir, runs / task / run_dir.name, ignore=shutil.ignore_patterns("wandb"))

    user = root / "user"
    (user / "mypkg").mkdir(parents=True)
    (user / "mypkg" / "__init__.py").write_text("")
    # the extending example of the documentation, with a body: evframe's flow network at a small width
    (user / "mypkg" / "models.py").write_text(
        "import torch\n\n"
        "from evframe.tasks.flow.feature_extractors import midinet2\n\n\n"
        "def tinyflow(n_input_channels: int, base: int = 8) -> torch.nn.Module:\n"
        "    return midinet2(n_input_channels=n_input_channels, base=base)\n")
    (user / "conf" / "model").mkdir(parents=True)
    (user / "conf" / "model" / "tinyflow.yaml").write_text(
        "_target_: mypkg.models.tinyflow\nn_input_channels: ${preprocess.channels}\nbase: 8\n")
    return root


def _geometry(dat: Path) -> tuple[int, int]:
    from evframe.io import open_events

    with open_events(dat) as reader:
        return int(reader.height), int(reader.width)


def _needed_gpus(command: DocCommand) -> int:
    if command.value("trainer") == "ddp" or command.value("experiment") == "ddp_slurm":
        devices = command.value("trainer.devices")
        return int(devices) if devices and devices.isdigit() else (4 if command.value("experiment") else 1)
    if command.value("trainer") == "gpu":
        return 1
    return 0


FAKE_SBATCH = r"""#!{python}
# Stands in for SLURM's sbatch: answers with a job id and runs the submitted array tasks on this machine, in the
# background and side by side, once submitit has moved their pickled jobs into place (it does so after sbatch
# answers).
import os, re, subprocess, sys, time
script = open(sys.argv[-1]).read()
options = dict(re.findall(r"^#SBATCH --([\w-]+)=?(\S*)", script, re.M))
first, last = (int(v) for v in re.match(r"(\d+)-(\d+)", options.get("array", "0-0")).groups())
job = str(4200 + len(os.listdir({state!r})))
open(os.path.join({state!r}, job), "w").write(script)
if os.fork() == 0:
    os.setsid()
    # sbatch's caller reads its output to the end: the background part must not hold that pipe open
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    def run_task(task):
        env = dict(os.environ, SLURM_JOB_ID=f"{{job}}_{{task}}", SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=str(task),
                   SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NTASKS="1",
                   SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="localhost", SLURM_STEP_ID="0")
        folder = re.search(r"--output[= ](\S+?)/%A_%a/", script).group(1)
        pickled = os.path.join(folder, f"{{job}}_{{task}}", f"{{job}}_{{task}}_submitted.pkl")
        for _ in range(600):
            if os.path.exists(pickled):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"sbatch stand-in: {{pickled}} never appeared")
        return subprocess.Popen(["/bin/sh", sys.argv[-1]], env=env)
    for process in [run_task(task) for task in range(first, last + 1)]:
        process.wait()
    os._exit(0)
print(f"Submitted batch job {{job}}")
"""

FAKE_SRUN = r"""#!/bin/sh
# Stands in for SLURM's srun: drops its options and runs the command once (one task on this machine).
while [ $# -gt 0 ]; do
  case "$1" in
    --output|--error|-o|-e) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
"""

FAKE_SACCT = r"""#!/bin/sh
# Stands in for SLURM's sacct: every job it is asked about is still running (submitit then looks for the results)
exit 0
"""


def _fake_slurm(bin_dir: Path, state: Path) -> None:
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(python=sys.executable, state=str(state))),
                       ("srun", FAKE_SRUN), ("sacct", FAKE_SACCT), ("scancel", "#!/bin/sh\nexit 0\n")):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


#: recordings the documentation names as examples (in the working directory) -> the fixture recording copied there
EXAMPLE_RECORDINGS = {"rec_td.dat": "rec0_td.dat", "rec1_td.dat": "rec0_td.dat", "rec2_td.dat": "rec1_td.dat"}


def prepare(command: DocCommand, fixtures: Path, cwd: Path) -> list[str]:
    """The command's arguments with every placeholder replaced, and ``cwd`` holding what they refer to."""
    task = command.value("task") or "flow"
    (run_dir,) = (fixtures / "runs" / task).iterdir()
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    args = []
    for arg in command.args:
        if ("outputs/" in arg and "<stamp>" in arg) or arg == "ckpt_path=last":
            shutil.copytree(run_dir, cwd / "outputs" / task / "runs" / run_dir.name)
            arg = arg.replace("<stamp>", run_dir.name)
        if arg == "ckpt_path=...":
            arg = f"ckpt_path={checkpoint}"
        if arg.startswith("dataset.paths=[...]"):
            arg = f"dataset.paths=[{fixtures}/rec/a.raw]"
        arg = re.sub(r"(?<=[=\[,])/(data|rec)/", lambda m: f"{fixtures}/{m.group(1)}/", arg)
        for name, fixture in EXAMPLE_RECORDINGS.items():
            if name in arg and not (cwd / name).exists():
                shutil.copy(fixtures / "recordings" / fixture, cwd / name)
        if "mypkg" in arg and not (cwd / "mypkg").exists():
            shutil.copytree(fixtures / "user" / "mypkg", cwd / "mypkg")
        args.append(arg)
    if any(a.startswith("--config-dir") for a in args) and not (cwd / "conf").exists():
        shutil.copytree(fixtures / "user" / "conf", cwd / "conf")
    left = [a for a in args if "<" in a or "..." in a or re.search(r"[=\[,]/(data|rec)/", a)]
    assert not left, f"{command.source}:{command.line}: no fixture stands for {left}: add one to this test"
    if command.value("debug") is None and "--cfg" not in args:
        args.append("debug=fdr")
    return args


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.source}:{c.line}" for c in COMMANDS])
def test_documented_command_runs_as_typed(command: DocCommand, fixtures: Path, tmp_path: Path) -> None:
    gpus = _needed_gpus(command)
    if gpus:
        import torch

        if torch.cuda.device_count() < gpus:
            pytest.skip(f"{command.text} needs {gpus} GPU(s), this machine has {torch.cuda.device_count()}")
    cwd = tmp_path / "work"
    cwd.mkdir()
    env = dict(os.environ)
    env.pop("EVFRAME_ROOT", None)  # outputs go under the directory the command starts from
    if command.value("hydra/launcher") == "slurm":
        _fake_slurm(tmp_path / "bin", tmp_path / "slurm_state")
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    args = prepare(command, fixtures, cwd)
    before = {p.name for p in cwd.iterdir()}
    _run([sys.executable, "-m", "evframe.run", *args], cwd, env)
    # everything a run writes goes under outputs/ of the directory it was started from
    assert {p.name for p in cwd.iterdir()} - before <= {"outputs"}
    if "--cfg" not in args:
        assert (cwd / "outputs").is_dir()
