"""Clip sources: homographies and their flow, determinism, user images and videos, skipped bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evframe.tasks.e2v.clips import ClipDataset, ClipTiming, collate_clips, homography_clip, series_clip
from evframe.tasks.e2v.homography import HomographyTrajectory, MotionConfig, homography_flow
from evframe.tasks.e2v.media import ClipSkip, open_frame_folder, to_gray_float
from evframe.tasks.flow.warping import backward_warp

NO_BRIGHTNESS = {"brightness": {"probability": 0.0}}


def test_clip_timing_grid_and_targets() -> None:
    timing = ClipTiming(num_bins=3, delta_t=50_000, frames_per_bin=4)
    assert timing.num_frames == 13 and timing.duration == 150_000
    assert timing.timestamps()[:3].tolist() == [0, 12_500, 25_000] and timing.timestamps()[-1] == 150_000
    assert timing.target_indices().tolist() == [4, 8, 12]
    with pytest.raises(ValueError, match="multiple of frames_per_bin"):
        ClipTiming(2, 50_000, 3)


def test_homography_flow_of_a_translation_is_the_opposite_shift() -> None:
    h_to = np.array([[1.0, 0, 3], [0, 1, -2], [0, 0, 1]])  # the later frame shows the source moved by (3, -2)
    flow, inside = homography_flow(np.eye(3), h_to, (6, 8))
    assert np.allclose(flow[0], -3) and np.allclose(flow[1], 2)
    # p + flow must land in the earlier frame: x - 3 >= 0 and y + 2 <= 5
    expected = np.zeros((6, 8), bool)
    expected[:4, 3:] = True
    assert np.array_equal(inside, expected)


def test_trajectory_shows_the_source_centre_at_the_frame_centre() -> None:
    rng = np.random.default_rng(0)
    traj = HomographyTrajectory.random(rng, (40, 60), (100.0, 70.0), MotionConfig(), 1.0)
    mat = traj.matrix(0.37)
    src = np.array([traj.cx.value(0.37), traj.cy.value(0.37), 1.0])
    p = mat @ src
    assert p[:2] / p[2] == pytest.approx([29.5, 19.5], abs=1e-9)


def test_flow_of_a_clip_aligns_consecutive_targets(timing: ClipTiming) -> None:
    rng = np.random.default_rng(3)
    from evframe.data.synthetic.textures import background_texture

    texture = background_texture(rng, 96, 0.4)
    clip = homography_clip(texture, True, rng, timing, (40, 56), MotionConfig(min_speed=40, max_speed=60),
                           ClipDataset(40, 56, timing, 1, NO_BRIGHTNESS).source.brightness)
    frames = torch.from_numpy(clip["frames"])
    assert frames.shape == (timing.num_frames, 40, 56) and clip["has_flow"]
    targets = timing.target_indices()
    for k in range(1, timing.num_bins):
        prev, cur = frames[targets[k - 1]][None, None], frames[targets[k]][None, None]
        warped = backward_warp(prev, torch.from_numpy(clip["flow"][k])[None])
        mask = torch.from_numpy(clip["flow_mask"][k])
        aligned = (warped - cur)[0, 0][mask].abs().mean()
        unaligned = (prev - cur)[0, 0][mask].abs().mean()
        assert aligned < 0.25 * unaligned


def test_clips_are_deterministic_by_seed_epoch_and_index(timing: ClipTiming) -> None:
    train = ClipDataset(24, 32, timing, 4, seed=5)
    again = ClipDataset(24, 32, timing, 4, seed=5)
    assert np.array_equal(train[1]["frames"], again[1]["frames"])
    assert not np.array_equal(train[1]["frames"], train[2]["frames"])
    first = train[0]["frames"]
    train.set_epoch(1)
    assert not np.array_equal(first, train[0]["frames"])  # training sees new clips every epoch
    evaluation = ClipDataset(24, 32, timing, 4, seed=5, vary_with_epoch=False)
    evaluation.set_epoch(3)
    assert np.array_equal(first, evaluation[0]["frames"])
    batch = collate_clips([train[0], train[1]])
    assert batch["frames"].shape == (2, timing.num_frames, 24, 32) and batch["flow"].shape == (2, 4, 2, 24, 32)
    assert batch["frames"].min() >= 0 and batch["frames"].max() <= 1


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_user_images_are_used_and_bad_ones_skipped_with_counted_warnings(tmp_path: Path, timing: ClipTiming) -> None:
    rng = np.random.default_rng(0)
    _write(tmp_path / "a_good.png", (rng.random((50, 70, 3)) * 255).astype(np.uint8))
    _write(tmp_path / "b_constant.png", np.full((50, 70), 128, np.uint8))
    (tmp_path / "c_broken.jpg").write_bytes(b"not a jpeg at all")
    dataset = ClipDataset(24, 32, timing, 6, {"images": str(tmp_path)}, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = [dataset[i] for i in range(6)]
    assert all(c["frames"].std() > 0.01 for c in clips)
    messages = [str(w.message) for w in caught if str(w.message).startswith("clip skipped")]
    constant = [m for m in messages if "b_constant.png: constant image" in m]
    broken = [m for m in messages if "c_broken.jpg: unreadable" in m]
    # every skip is counted by reason; the first 3 of each reason are announced with their running count
    counts = dict(dataset.skips.counts)
    assert set(counts) == {"constant image", "unreadable"}
    assert (len(constant), len(broken)) == (min(3, counts["constant image"]), min(3, counts["unreadable"]))
    assert len(constant) + len(broken) == len(messages)
    assert all(f"[{i + 1} skipped for 'constant image' so far]" in m for i, m in enumerate(constant))


def test_a_folder_of_only_bad_images_fails_clearly(tmp_path: Path, timing: ClipTiming) -> None:
    _write(tmp_path / "flat.png", np.zeros((40, 40), np.uint8))
    dataset = ClipDataset(24, 32, timing, 2, {"images": str(tmp_path)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="could not be used.*constant image"):
            dataset[0]
    with pytest.raises(ValueError, match="holds no file"):
        ClipDataset(24, 32, timing, 2, {"images": str(tmp_path / "..")})


def test_wrong_channel_count_and_tiny_images_are_rejected_with_their_reason() -> None:
    with pytest.raises(ClipSkip, match="wrong channel count.*2 channels"):
        to_gray_float(np.zeros((20, 20, 2), np.uint8), "two.png")
    with pytest.raises(ClipSkip, match="too small"):
        to_gray_float(np.zeros((4, 20), np.uint8), "thin.png")
    bgra = np.zeros((10, 10, 4), np.uint8)
    bgra[..., :3] = 255
    assert to_gray_float(bgra, "ok.png") == pytest.approx(np.ones((10, 10)))
    assert to_gray_float(np.full((10, 10), 65535, np.uint16), "deep.png") == pytest.approx(np.ones((10, 10)))


def _frame_folder(root: Path, values: list[int], times_s: list[float]) -> Path:
    root.mkdir()
    lines = []
    for i, (v, t) in enumerate(zip(values, times_s, strict=True)):
        image = np.full((30, 40), v, np.uint8)
        image[:, : 5 + 3 * i] = 255 - v  # some structure, so the folder is not constant
        _write(root / f"f{i}.png", image)
        lines.append(f"{t:.6f} f{i}.png")
    (root / "images.txt").write_text("# t image\n" + "\n".join(lines) + "\n")
    return root


def test_frame_folder_clips_are_linear_blends_on_the_clip_grid(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "frames", [40, 200, 100], [10.0, 10.1, 10.2])
    series = open_frame_folder(folder)
    assert series.timestamps.tolist() == [0, 100_000, 200_000]
    timing = ClipTiming(num_bins=4, delta_t=50_000, frames_per_bin=1)
    clip = series_clip(series, np.random.default_rng(0), timing, (30, 40))
    # the right-most column keeps the background value v of each source frame: 40, (40+200)/2, 200, 150, 100
    assert clip["frames"][:, 10, -1] * 255 == pytest.approx([40, 120, 200, 150, 100], abs=0.6)
    assert not clip["has_flow"]
    with pytest.raises(ClipSkip, match="shorter than the clip"):
        series_clip(series, np.random.default_rng(0), ClipTiming(5, 50_000, 1), (30, 40))


def test_frame_folder_index_errors_name_the_line(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "frames", [40, 200], [0.0, 0.1])
    (folder / "images.txt").write_text("0.0 f0.png\nzero f1.png\n")
    with pytest.raises(ValueError, match="line 2 is 'zero f1.png'"):
        open_frame_folder(folder)
    (folder / "images.txt").write_text("0.1 f0.png\n0.0 f1.png\n")
    with pytest.raises(ValueError, match="timestamps must increase"):
        open_frame_folder(folder)


def test_video_files_are_clip_sources_and_short_ones_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "moving.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (40, 30))
    assert writer.isOpened()
    for i in range(12):  # 12 frames at 20 fps: 550 ms
        frame = np.full((30, 40, 3), 60, np.uint8)
        frame[:, 2 * i: 2 * i + 8] = 220
        writer.write(frame)
    writer.release()
    long_enough = ClipTiming(num_bins=4, delta_t=100_000, frames_per_bin=2)
    dataset = ClipDataset(24, 32, long_enough, 2, {"videos": [str(path)], "video_probability": 1.0}, seed=0)
    clip = dataset[0]
    assert clip["frames"].shape == (9, 24, 32) and not clip["has_flow"]
    assert clip["frames"].max() > 0.7 and clip["frames"].min() < 0.3
    too_long = ClipTiming(num_bins=4, delta_t=200_000, frames_per_bin=2)
    short = ClipDataset(24, 32, too_long, 2, {"videos": [str(path)], "video_probability": 0.5}, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = [short[0], short[1]]
    # a skipped video clip is replaced by a procedural-texture clip: the batch is never empty
    assert all(c["frames"].shape == (9, 24, 32) for c in clips)
    assert short.skips.counts["shorter than the clip"] >= 1
    assert any("moving.avi" in str(w.message) and "shorter than the clip" in str(w.message) for w in caught)


def test_a_static_video_gives_no_events_and_is_skipped(tmp_path: Path, timing: ClipTiming) -> None:
    folder = tmp_path / "static"
    folder.mkdir()
    image = np.full((30, 40), 90, np.uint8)
    image[10:20, 10:30] = 200
    for i in range(20):
        _write(folder / f"{i:02d}.png", image)
    dataset = ClipDataset(24, 32, timing, 1, {"videos": [str(folder)], "video_probability": 1.0, "fps": 100.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="constant clip"):
            dataset[0]
    mixed = ClipDataset(24, 32, timing, 1, {"videos": [str(folder)], "video_probability": 0.5, "fps": 100.0}, seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip = mixed[0]
    assert clip["has_flow"] and np.abs(np.diff(clip["frames"], axis=0)).max() > 0.01  # a moving texture instead
    assert all("constant clip" in str(w.message) for w in caught if "clip skipped" in str(w.message))
