"""Evaluation recordings: frame targets per bin, frame folders turned into recordings, real frames (realdata)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evframe.data.metadata import FileMetadata
from evframe.data.sequential import SequentialDataLoader
from evframe.io import FramesReader, load_events, write_frames_h5
from evframe.tasks.e2v.recordings import frame_folder_recording, frames_path, load_frames, target_index_per_bin


def test_target_of_a_bin_is_the_last_frame_up_to_its_end() -> None:
    stamps = np.array([0, 10, 20, 35, 50, 90])
    # bins [0, 20), [20, 40), [40, 60), [60, 80): frames in (0, 20], (20, 40], (40, 60], (60, 80]
    assert target_index_per_bin(stamps, 0, 20, 4).tolist() == [2, 3, 4, -1]
    assert target_index_per_bin(np.zeros(0, np.int64), 0, 20, 2).tolist() == [-1, -1]


def test_load_frames_reads_and_downsamples_the_targets(tmp_path: Path) -> None:
    frames = np.zeros((3, 4, 6), np.uint8)
    frames[1, :2, :2] = 200  # one 2x2 block, averaged into one pixel when downsampled
    frames[2] = 100
    write_frames_h5(tmp_path / "rec_frames.h5", frames, np.array([0, 50, 100]))
    metadata = FileMetadata(tmp_path / "rec_td.dat", 150, 50, 2, height=4, width=6, downsample=1)
    labels, labeled = load_frames(metadata, 0, 100, torch.zeros(2, 5, 2, 3))
    assert labeled.tolist() == [True, True]
    assert labels[0].shape == (1, 2, 3)
    assert float(labels[0][0, 0, 0]) == pytest.approx(200 / 255) and float(labels[0][0, 1, 2]) == 0
    assert float(labels[1].mean()) == pytest.approx(100 / 255)
    wrong = FileMetadata(tmp_path / "rec_td.dat", 150, 50, 2, height=8, width=6)
    with pytest.raises(ValueError, match="frames are 4x6 but the events are 8x6"):
        load_frames(wrong, 0, 100, torch.zeros(2, 5, 8, 6))
    with pytest.raises(FileNotFoundError, match="ground-truth frames not found"):
        load_frames(FileMetadata(tmp_path / "other_td.dat", 150, 50, 2), 0, 100, torch.zeros(2, 5, 4, 6))


def _moving_bar_folder(root: Path, count: int = 6, size: tuple[int, int] = (30, 40)) -> Path:
    root.mkdir()
    lines = []
    for i in range(count):
        image = np.full(size, 50, np.uint8)
        image[:, 4 * i: 4 * i + 6] = 220
        cv2.imwrite(str(root / f"{i:03d}.png"), image)
        lines.append(f"{1.5 + 0.04 * i:.3f} {i:03d}.png")
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    return root


def test_frame_folder_becomes_a_cached_recording_with_its_frames(tmp_path: Path) -> None:
    folder = _moving_bar_folder(tmp_path / "bar")
    dat = frame_folder_recording(folder, tmp_path / "cache", {"threshold_sigma": 0.0})
    events = load_events(dat)
    reader = FramesReader(frames_path(dat))
    assert reader.timestamps.tolist() == [0, 40_000, 80_000, 120_000, 160_000, 200_000]
    assert len(reader) == 6 and (reader.height, reader.width) == (30, 40)
    assert len(events) > 0 and events["t"].min() > 0 and events["t"].max() <= 200_000
    assert set(np.unique(events["p"])) == {0, 1}  # the bar's leading edge brightens, its trailing edge darkens
    mtime = os.stat(dat).st_mtime_ns
    assert frame_folder_recording(folder, tmp_path / "cache", {"threshold_sigma": 0.0}) == dat
    assert os.stat(dat).st_mtime_ns == mtime  # reused, not simulated again
    assert frame_folder_recording(folder, tmp_path / "cache", {"threshold_sigma": 0.01}) != dat  # other settings


def test_frame_folder_with_a_bad_frame_fails_naming_it(tmp_path: Path) -> None:
    folder = _moving_bar_folder(tmp_path / "bar")
    cv2.imwrite(str(folder / "003.png"), np.zeros((20, 40), np.uint8))
    with pytest.raises(ValueError, match="003.png is 20x40, the first frame is 30x40"):
        frame_folder_recording(folder, tmp_path / "cache")
    (folder / "003.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="003.png: unreadable"):
        frame_folder_recording(folder, tmp_path / "cache")


@pytest.mark.realdata
def test_real_frames_become_an_evaluation_stream(realdata: Path, tmp_path: Path) -> None:
    source = realdata / "ecd_slider_depth_frames"
    # the first 24 frames (0.9 s), listed by absolute path from a folder of our own
    lines = [line.split() for line in (source / "images.txt").read_text().splitlines() if line.strip()][:24]
    folder = tmp_path / "slider_start"
    folder.mkdir()
    (folder / "images.txt").write_text("".join(f"{t} {source / name}\n" for t, name in lines))
    dat = frame_folder_recording(folder, tmp_path / "cache")
    reader = FramesReader(frames_path(dat))
    assert (reader.height, reader.width) == (180, 240) and len(reader) == 24
    loader = SequentialDataLoader([dat], delta_t=50_000, preprocess_function_name="event_cube",
                                  array_dim=[4, 5, 180, 240], load_labels=load_frames, batch_size=1,
                                  preprocess_kwargs={"num_utbins": 5, "split_polarity": False})
    batch = next(iter(loader))
    assert batch["inputs"].abs().sum() > 0  # the slider moves: events everywhere there is texture
    # frames are ~38.8 ms apart, so every 50 ms bin holds one; its target is the last frame up to the bin end
    assert batch["frame_is_labeled"][:, 0].tolist() == [True] * 4
    index = target_index_per_bin(reader.timestamps, 0, 50_000, 4)
    png = cv2.imread(str(source / lines[int(index[2])][1]), cv2.IMREAD_GRAYSCALE)
    torch.testing.assert_close(batch["labels"][2][0][0], torch.from_numpy(png.astype(np.float32) / 255))


def test_a_constant_frame_folder_is_refused_as_an_evaluation_source(tmp_path: Path) -> None:
    folder = tmp_path / "still"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((20, 30), 128, np.uint8))
    (folder / "images.txt").write_text("".join(f"{0.05 * i:.2f} {i:03d}.png\n" for i in range(4)))
    with pytest.raises(ValueError, match=r"frame folder '.*still': its 4 frames give no event"):
        frame_folder_recording(folder, tmp_path / "cache", {"threshold_sigma": 0.0})
    assert not list((tmp_path / "cache").rglob("*_td.dat"))  # nothing half-written is left to be picked up later
