"""SequentialDataLoader under DDP and resumption: sharding over ranks and workers, mid-epoch state, padding loss."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from evframe.data.sequential import SequentialDataLoader
from evframe.io import EVENT_DTYPE, write_dat
from evframe.tasks.recurrent import RecurrentTaskModule

HEIGHT, WIDTH, DELTA_T, NUM_TBINS = 6, 8, 1000, 2
BATCH_US = DELTA_T * NUM_TBINS
#: recording name -> number of batches it lasts
LENGTHS = {"a": 3, "b": 1, "c": 4, "d": 2, "e": 5}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("recordings")
    paths = []
    for i, (name, batches) in enumerate(LENGTHS.items()):
        rng = np.random.default_rng(i)
        n = 40 * batches
        ev = np.zeros(n, dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"] = rng.integers(0, WIDTH, n), rng.integers(0, HEIGHT, n), rng.integers(0, 2, n)
        ev["t"] = np.sort(rng.integers(0, batches * BATCH_US, n))
        ev["t"][-1] = batches * BATCH_US - 1  # exactly `batches` batches long
        path = folder / f"{name}_td.dat"
        write_dat(path, ev, HEIGHT, WIDTH)
        paths.append(path)
    return paths


def _loader(files: list[Path], **kwargs) -> SequentialDataLoader:
    return SequentialDataLoader([str(f) for f in files], DELTA_T, "histo", [NUM_TBINS, 2, HEIGHT, WIDTH], **kwargs)


def _plays(batch: dict) -> list[tuple[str, int] | None]:
    """(recording, start time) of every slot of a batch (None for padding)."""
    return [None if md.is_padding() else (Path(md.path).stem, int(start)) for md, start, _ in batch["video_infos"]]


@pytest.mark.parametrize("world_size, num_workers", [(2, 2), (3, 1), (7, 0)])
def test_every_stream_is_played_by_exactly_one_process_and_ranks_get_equal_batch_counts(
        recordings: list[Path], world_size: int, num_workers: int) -> None:
    """Ranks x workers over 5 recordings (7 ranks: two ranks get none and only pad): every batch of every
    recording is played once, by one (rank, slot), in time order; all ranks yield the same number of batches."""
    seen: Counter = Counter()
    owner: dict[str, tuple[int, int]] = {}
    lengths = []
    for rank in range(world_size):
        batches = list(_loader(recordings, batch_size=2, num_workers=num_workers, rank=rank, world_size=world_size,
                               shuffle=True, seed=3))
        lengths.append(len(batches))
        last_start: dict[str, int] = {}
        for batch in batches:
            for slot, play in enumerate(_plays(batch)):
                if play is None:
                    continue
                name, start = play
                assert owner.setdefault(name, (rank, slot)) == (rank, slot)  # one stream, one process and slot
                assert start > last_start.get(name, -1)  # in order: the recurrent memory follows the recording
                last_start[name] = start
                seen[play] += 1
    assert len(set(lengths)) == 1, lengths  # every rank the same count: nobody waits in a collective forever
    assert seen == Counter({(f"{n}_td", b * BATCH_US): 1 for n, k in LENGTHS.items() for b in range(k)})


def test_a_pass_cut_short_resumes_at_the_next_batch_with_fresh_memory(recordings: list[Path]) -> None:
    options = dict(batch_size=2, shuffle=True, seed=5, max_consecutive_batch=2)
    reference = _loader(recordings, **options)
    reference.set_epoch(4)
    full = list(reference)
    assert len(full) >= 5

    interrupted = _loader(recordings, **options)
    interrupted.set_epoch(4)
    iterator = iter(interrupted)
    assert interrupted.state_dict() == {}  # an iterator made but not started (Lightning checks iterability so)
    consumed = [next(iterator) for _ in range(3)]
    state = interrupted.state_dict()
    assert state == {"epoch": 4, "max_consecutive_batch": 2, "num_batches": len(full), "batches_consumed": 3}
    assert [_plays(b) for b in consumed] == [_plays(b) for b in full[:3]]

    resumed = _loader(recordings, batch_size=2, shuffle=True, seed=5)  # a new process: curriculum not set yet
    resumed.set_epoch(0)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [_plays(b) for b in rest] == [_plays(b) for b in full[3:]]
    for got, want in zip(rest, full[3:], strict=True):
        assert torch.equal(got["inputs"], want["inputs"])
    active = torch.tensor([p is not None for p in _plays(rest[0])])
    assert torch.all(rest[0]["mask_keep_memory"][active] == 0)  # the recurrent state was not saved: start afresh
    assert torch.equal(rest[1]["mask_keep_memory"], full[4]["mask_keep_memory"])
    assert resumed.state_dict()["batches_consumed"] == len(full)


def test_a_finished_pass_changes_nothing_on_load(recordings: list[Path]) -> None:
    loader = _loader(recordings, batch_size=2, shuffle=True, seed=5)
    loader.set_epoch(2)
    first = [_plays(b) for b in loader]
    state = loader.state_dict()
    assert state["batches_consumed"] == state["num_batches"] == len(first)
    other = _loader(recordings, batch_size=2, shuffle=True, seed=5)
    other.set_epoch(3)
    other.load_state_dict(state)
    expected = _loader(recordings, batch_size=2, shuffle=True, seed=5)
    expected.set_epoch(3)
    assert [_plays(b) for b in other] == [_plays(b) for b in expected]


def test_padding_loss_is_zero_with_a_zero_gradient_for_every_parameter() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Conv2d(3, 2, 1))
    outputs = [net[0](torch.zeros(1, 2, 5, 5)), net(torch.zeros(1, 2, 5, 5))]
    loss = RecurrentTaskModule.padding_loss(outputs)
    assert loss.item() == 0.0
    loss.backward()
    for name, param in net.named_parameters():
        # a gradient exists (DDP's all-reduce needs every parameter) and is zero (no effect on training)
        assert param.grad is not None and torch.count_nonzero(param.grad) == 0, name


def test_flow_curriculum_follows_the_restored_epoch_when_a_run_resumes(recordings: list[Path],
                                                                      tmp_path: Path) -> None:
    """FlowCallback.on_fit_start runs before Lightning restores the epoch counter; the chunk length of a resumed
    epoch must still be the one of that epoch: int(p ** epoch_index), 2 for epoch index 3 with p = 1.414."""
    from types import SimpleNamespace

    from evframe.tasks.flow.callbacks import FlowCallback
    from evframe.tasks.flow.data_module import FlowDataModule

    (tmp_path / "train").mkdir()
    for path in recordings:
        (tmp_path / "train" / path.name).symlink_to(path)
    datamodule = FlowDataModule(
        dataset={"root": str(tmp_path), "batch_size": 2, "num_workers": 0, "height": HEIGHT, "width": WIDTH},
        preprocess={"name": "histo", "delta_t": DELTA_T, "num_tbins": NUM_TBINS, "channels": 2, "downsample": 0})
    trainer = SimpleNamespace(current_epoch=0, global_rank=0, world_size=1, datamodule=datamodule)
    datamodule.trainer = trainer
    FlowCallback(curriculum_param=1.414, video_result_every_n_epochs=0).on_fit_start(trainer, None)
    trainer.current_epoch = 3  # what Lightning restores from the checkpoint after on_fit_start
    assert datamodule.train_dataloader().dataset.max_consecutive_batch == 2
    trainer.current_epoch = 1
    assert datamodule.train_dataloader().dataset.max_consecutive_batch == 1
