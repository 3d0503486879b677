"""Data sets: reproducible synthetic clips, image folders and video folders with labels, unreadable
files skipped with one warning each, and clips that never cross the end of a video."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import decord
import pytest
import torch
from torchwm.wm.config import JEPAConfig
from torchwm.wm.data import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ImageFolder,
    MovingShapes,
    VideoFolder,
    build_dataset,
)

from tests.conftest import VIDEO_FRAMES, frame_marker


def skip_warnings(record: list[warnings.WarningMessage], name: str) -> list[str]:
    return [str(w.message) for w in record if name in str(w.message) and "skipping" in str(w.message)]


# --- moving shapes ---------------------------------------------------------------------------------
def test_moving_shapes_is_a_pure_function_of_seed_and_index() -> None:
    a, b = MovingShapes(8, 4, 32, seed=1), MovingShapes(8, 4, 32, seed=1)
    assert torch.equal(a[3]["frames"], b[3]["frames"]) and a[3]["label"] == b[3]["label"]
    assert torch.equal(a[3]["frames"], a[3]["frames"])
    assert not torch.equal(a[3]["frames"], a[4]["frames"])
    assert not torch.equal(a[3]["frames"], MovingShapes(8, 4, 32, seed=2)[3]["frames"])


def test_moving_shapes_clip_format() -> None:
    ds = MovingShapes(5, 4, 32, frame_step=2)
    item = ds[0]
    assert len(ds) == 5
    assert item["frames"].shape == (4, 32, 32, 3) and item["frames"].dtype == torch.uint8
    assert item["label"] in (0, 1)
    assert not torch.equal(item["frames"][0], item["frames"][-1])  # the shapes move
    assert ds.skipped == []


# --- image folders -----------------------------------------------------------------------------------
def test_image_folder_reads_class_subfolders(image_folder: Path) -> None:
    ds = ImageFolder(image_folder / "train", image_size=32, num_frames=2)
    assert ds.classes == ["a", "b"] and len(ds) == 12
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert labels == [0] * 6 + [1] * 6
    frames = ds[0]["frames"]
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == torch.uint8
    assert torch.equal(frames[0], frames[1])  # an image is repeated to a clip
    assert ds.skipped == []


def test_image_folder_skips_empty_and_garbage_files_with_one_warning_each(image_folder: Path) -> None:
    train = image_folder / "train"
    empty, garbage = train / "a" / "empty.png", train / "b" / "garbage.png"
    empty.write_bytes(b"")
    garbage.write_bytes(b"definitely not a png " * 20)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = ImageFolder(train, image_size=32)
        for _ in range(2):  # a second pass warns no more
            items = [ds[i] for i in range(len(ds))]
    assert len(skip_warnings(record, str(empty))) == 1
    assert len(skip_warnings(record, str(garbage))) == 1
    assert sorted(ds.skipped) == sorted([str(empty), str(garbage)])
    assert all(item["frames"].shape == (1, 32, 32, 3) for item in items)


def test_image_folder_flat_layout(tmp_path: Path, image_folder: Path) -> None:
    ds = ImageFolder(image_folder / "train" / "a", image_size=16)
    assert ds.classes == [] and len(ds) == 6 and ds[0]["label"] == 0


def test_empty_image_folder_names_folder_and_extensions(tmp_path: Path) -> None:
    folder = tmp_path / "nothing"
    (folder / "cls").mkdir(parents=True)
    (folder / "cls" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no readable image") as err:
        ImageFolder(folder, image_size=32)
    assert str(folder) in str(err.value)
    assert all(ext in str(err.value) for ext in IMAGE_EXTENSIONS)


def test_missing_folder_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere", image_size=32)


# --- video folders -------------------------------------------------------------------------------------
@pytest.fixture
def videos(video_folder: Path) -> VideoFolder:
    with pytest.warns(UserWarning, match="broken.mp4"):
        return VideoFolder(video_folder / "train", image_size=32, num_frames=4, frame_step=2)


def clip_indices(ds: VideoFolder, index: int) -> list[int]:
    _, start, _ = ds.clips[index]
    return list(range(start, start + ds.num_frames * ds.frame_step, ds.frame_step))


def test_video_folder_skips_a_corrupt_file(video_folder: Path) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = VideoFolder(video_folder / "train", image_size=32, num_frames=4)
    broken = str(video_folder / "train" / "b" / "broken.mp4")
    assert ds.skipped == [broken]
    assert len(skip_warnings(record, broken)) == 1
    assert ds.classes == ["a", "b"]
    assert all(path.name != "broken.mp4" for path, _, _ in ds.clips)
    assert {label for _, _, label in ds.clips} == {0, 1}


@pytest.mark.parametrize(("num_frames", "frame_step"), [(4, 1), (4, 2), (3, 3), (5, 1), (12, 1)])
def test_video_clips_never_cross_the_end_of_a_file(
    video_folder: Path, num_frames: int, frame_step: int
) -> None:
    with pytest.warns(UserWarning, match="broken.mp4"):
        ds = VideoFolder(video_folder / "train", 32, num_frames, frame_step)
    lengths = {path: len(decord.VideoReader(str(path), num_threads=1)) for path, _, _ in ds.clips}
    assert set(lengths.values()) == {VIDEO_FRAMES}
    span = (num_frames - 1) * frame_step + 1
    assert len(ds) == 3 * len(range(0, VIDEO_FRAMES - span + 1, num_frames * frame_step))
    for i, (path, _, _) in enumerate(ds.clips):
        idx = clip_indices(ds, i)
        assert len(idx) == num_frames and 0 <= idx[0] and idx[-1] < lengths[path]


def test_video_frames_follow_frame_step_and_are_resized(videos: VideoFolder) -> None:
    # 12 frames, clips of 4 frames 2 apart, one start every 8 frames: only start 0 fits in each file
    assert len(videos) == 3
    for i in range(len(videos)):
        item = videos[i]
        frames = item["frames"]
        assert frames.shape == (4, 32, 32, 3) and frames.dtype == torch.uint8
        marks = frames[:, 2, 2].float().mean(dim=1)  # inside the top-left marker square
        expected = torch.tensor([frame_marker(t) for t in clip_indices(videos, i)], dtype=torch.float32)
        assert torch.allclose(marks, expected, atol=6), (marks, expected)


def test_video_folder_with_too_short_files_raises(video_folder: Path) -> None:
    with (
        warnings.catch_warnings(record=True) as record,
        pytest.raises(ValueError, match="no readable video") as err,
    ):
        warnings.simplefilter("always")
        VideoFolder(video_folder / "train", 32, num_frames=VIDEO_FRAMES + 1)
    assert str(video_folder / "train") in str(err.value) and ".mp4" in str(err.value)
    assert len([w for w in record if "shorter than one clip" in str(w.message)]) == 3


def test_empty_video_folder_names_folder_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "vids").mkdir()
    with pytest.raises(ValueError, match="no readable video clip") as err:
        VideoFolder(tmp_path / "vids", 32, 4)
    assert str(tmp_path / "vids") in str(err.value)
    assert all(ext in str(err.value) for ext in VIDEO_EXTENSIONS)


def test_video_folder_pickles_without_open_readers(videos: VideoFolder) -> None:
    import pickle

    videos[0]  # opens a reader
    clone = pickle.loads(pickle.dumps(videos))
    assert torch.equal(clone[0]["frames"], videos[0]["frames"])


# --- build_dataset and the trainer's summary -----------------------------------------------------------------
def test_build_dataset_follows_the_config(
    tiny_cfg: JEPAConfig, image_folder: Path, video_folder: Path
) -> None:
    assert isinstance(build_dataset(tiny_cfg), MovingShapes)
    cfg = dataclasses.replace(tiny_cfg, dataset="imagefolder", root_path=str(image_folder))
    ds = build_dataset(cfg)
    assert isinstance(ds, ImageFolder) and ds[0]["frames"].shape == (4, 32, 32, 3)
    cfg = dataclasses.replace(tiny_cfg, dataset="video", root_path=str(video_folder))
    with pytest.warns(UserWarning, match="broken.mp4"):
        ds = build_dataset(cfg)
    assert isinstance(ds, VideoFolder) and ds[0]["frames"].shape == (4, 32, 32, 3)


def test_trainer_summary_lists_skipped_files(tiny_cfg: JEPAConfig, video_folder: Path) -> None:
    from torchwm.wm.trainer import JEPAAgent

    cfg = dataclasses.replace(tiny_cfg, dataset="video", root_path=str(video_folder), max_steps=1)
    with pytest.warns(UserWarning, match="broken.mp4"):
        summary = JEPAAgent(cfg).train()
    assert summary.steps == 1
    assert summary.skipped_files == [str(video_folder / "train" / "b" / "broken.mp4")]


def test_trainer_summary_lists_undecodable_images(tiny_cfg: JEPAConfig, image_folder: Path) -> None:
    from torchwm.wm.trainer import JEPAAgent

    garbage = image_folder / "train" / "b" / "garbage.png"
    garbage.write_bytes(b"\x89PNG but not really" * 10)
    cfg = dataclasses.replace(
        tiny_cfg, dataset="imagefolder", root_path=str(image_folder), epochs=1, batch_size=13
    )
    with pytest.warns(UserWarning, match="garbage.png"):
        summary = JEPAAgent(cfg).train()  # one epoch of 13 images visits every file
    assert summary.skipped_files == [str(garbage)]
