"""The episode format (wm.episodes) and the rollouts clip dataset (wm.rollouts)."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchwm.wm import episodes as ep
from torchwm.wm.episodes import EpisodeWriter, episode_frames, load_episode, read_manifest
from torchwm.wm.rollouts import RolloutClips

BOX = {"kind": "box", "shape": [2], "low": [-1.0, -1.0], "high": [1.0, 1.0]}
DISCRETE = {"kind": "discrete", "n": 3}


def step_frames(num_frames: int, shape: tuple[int, int, int] = (10, 14, 3), episode: int = 0) -> np.ndarray:
    """uint8 [T, H, W, C] frames whose pixel (0, 0) holds (step, episode) and the rest a gradient."""
    h, w, c = shape
    yy, xx = np.mgrid[:h, :w]
    frames = np.stack(
        [
            (np.stack([xx * 9 + t, yy * 11, xx + yy + 5 * episode], -1) % 256)[..., :c]
            for t in range(num_frames)
        ]
    )
    frames[:, 0, 0, 0] = np.arange(num_frames)
    if c > 1:
        frames[:, 0, 0, 1] = episode
    return frames.astype(np.uint8)


def write_episodes(
    root: Path, lengths: list[int], space: dict = BOX, shape=(10, 14, 3), lossless=True, states=True
) -> list[dict]:
    """Write episodes of the given step counts; return the arrays given to the writer."""
    rng = np.random.default_rng(len(lengths))
    writer = EpisodeWriter(root, "Fake-v0", shape, space, fps=10, lossless=lossless)
    written = []
    for i, steps in enumerate(lengths):
        arrays = {
            "frames": step_frames(steps + 1, shape, i),
            "actions": rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
            if space["kind"] == "box"
            else rng.integers(0, 3, steps),
            "rewards": rng.normal(size=steps).astype(np.float32),
            "terminated": np.arange(steps) == steps - 1,
            "truncated": np.zeros(steps, bool),
            "states": rng.normal(size=(steps + 1, 3)).astype(np.float32) if states else None,
        }
        writer.add_episode(**arrays, info={"success": i % 2 == 0})
        written.append(arrays)
    return written


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- write / read


@pytest.mark.parametrize("shape", [(12, 16, 3), (9, 21, 3), (8, 10, 1)])
def test_lossless_round_trip_is_bit_exact(tmp_path, shape):
    frames = np.random.default_rng(0).integers(0, 256, (9, *shape), dtype=np.uint8)
    writer = EpisodeWriter(tmp_path, "Fake-v0", shape, DISCRETE, lossless=True)
    name = writer.add_episode(
        frames, np.array([0, 1, 2, 0, 1, 2, 0, 1]), np.ones(8), np.zeros(8), np.zeros(8)
    )
    episode = load_episode(tmp_path, name)
    assert episode.frames.dtype == np.uint8
    np.testing.assert_array_equal(episode.frames, frames)
    np.testing.assert_array_equal(episode_frames(tmp_path, name, [7, 0, 3]), frames[[7, 0, 3]])


def test_lossy_round_trip_is_close_and_arrays_exact(tmp_path):
    [given] = write_episodes(tmp_path, [12], lossless=False, shape=(32, 40, 3))
    episode = load_episode(tmp_path, "episode_000000")
    assert np.abs(episode.frames.astype(int) - given["frames"]).mean() < 3
    np.testing.assert_array_equal(episode.actions, given["actions"])
    np.testing.assert_array_equal(episode.rewards, given["rewards"])
    np.testing.assert_array_equal(episode.terminated, given["terminated"])
    np.testing.assert_array_equal(episode.states, given["states"])
    assert read_manifest(tmp_path)["lossless"] is False


def test_manifest_describes_episodes(tmp_path):
    given = write_episodes(tmp_path, [4, 6])
    manifest = read_manifest(tmp_path)
    assert manifest["format_version"] == ep.FORMAT_VERSION and manifest["env_id"] == "Fake-v0"
    assert manifest["frame_shape"] == [10, 14, 3] and manifest["action_space"]["kind"] == "box"
    entry = manifest["episodes"][1]
    assert (entry["num_frames"], entry["num_steps"], entry["success"], entry["state_dim"]) == (7, 6, False, 3)
    assert entry["return"] == pytest.approx(float(given[1]["rewards"].sum()), rel=1e-5)
    assert entry["files"] == {"video": "episode_000001.mp4", "data": "episode_000001.npz"}
    assert "-g" in manifest["codec"]["params"]


def test_resize_at_decode(tmp_path):
    write_episodes(tmp_path, [5])
    assert episode_frames(tmp_path, "episode_000000", [0, 4], size=8).shape == (2, 8, 8, 3)
    assert episode_frames(tmp_path, "episode_000000", [1], size=(6, 16)).shape == (
        1,
        6,
        16,
        3,
    )  # 16: decord-unsafe width


def test_append_keeps_finished_episodes_byte_identical(tmp_path):
    write_episodes(tmp_path, [3, 4])
    files = sorted(p for p in tmp_path.iterdir() if p.name.startswith("episode_"))
    before = {p.name: digest(p) for p in files}
    writer = EpisodeWriter(tmp_path, "Fake-v0", (10, 14, 3), BOX, fps=10, lossless=True)
    name = writer.add_episode(step_frames(3), np.zeros((2, 2)), np.zeros(2), np.zeros(2), np.zeros(2))
    assert name == "episode_000002"
    assert {p.name: digest(tmp_path / p.name) for p in files} == before
    assert [e["name"] for e in read_manifest(tmp_path)["episodes"]] == [
        "episode_000000",
        "episode_000001",
        "episode_000002",
    ]


@pytest.mark.parametrize(("env_id", "shape"), [("Other-v0", (10, 14, 3)), ("Fake-v0", (10, 15, 3))])
def test_append_refuses_other_env_or_frame_shape(tmp_path, env_id, shape):
    write_episodes(tmp_path, [3])
    with pytest.raises(ValueError, match="Fake-v0|14") as info:
        EpisodeWriter(tmp_path, env_id, shape, BOX, fps=10, lossless=True)
    assert env_id in str(info.value) or "15" in str(info.value)


def test_crash_while_writing_leaves_manifest_clean(tmp_path, monkeypatch):
    write_episodes(tmp_path, [3])

    def crash(path, arrays):
        Path(path).write_bytes(b"half an npz")
        raise KeyboardInterrupt

    monkeypatch.setattr(ep, "_write_npz", crash)
    writer = EpisodeWriter(tmp_path, "Fake-v0", (10, 14, 3), BOX, fps=10, lossless=True)
    with pytest.raises(KeyboardInterrupt):
        writer.add_episode(step_frames(4), np.zeros((3, 2)), np.zeros(3), np.zeros(3), np.zeros(3))
    monkeypatch.undo()
    assert [e["name"] for e in read_manifest(tmp_path)["episodes"]] == ["episode_000000"]
    assert any(p.name.endswith(".tmp.mp4") for p in tmp_path.iterdir())
    EpisodeWriter(tmp_path, "Fake-v0", (10, 14, 3), BOX, fps=10, lossless=True)
    assert not any(".tmp" in p.name for p in tmp_path.iterdir())
    assert len(RolloutClips(tmp_path, num_frames=2)) == 2


def test_writer_rejects_bad_arrays(tmp_path):
    writer = EpisodeWriter(tmp_path, "Fake-v0", (10, 14, 3), DISCRETE)
    with pytest.raises(ValueError, match="L\\+1"):
        writer.add_episode(step_frames(4), np.zeros(4, int), np.zeros(4), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="\\[0, 3\\)"):
        writer.add_episode(step_frames(4), np.array([0, 1, 3]), np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="uint8"):
        writer.add_episode(
            step_frames(4).astype(np.float32), np.zeros(3, int), np.zeros(3), np.zeros(3), np.zeros(3)
        )


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99, "episodes": []}))
    with pytest.raises(ValueError, match="format_version 99"):
        read_manifest(tmp_path)


# ----------------------------------------------------------------------------- RolloutClips


def test_every_clip_stays_inside_its_episode_and_concatenates_actions(tmp_path):
    lengths, T, k = [7, 12, 5, 9], 3, 2
    given = write_episodes(tmp_path, lengths)
    clips = RolloutClips(tmp_path, num_frames=T, frame_step=k)
    assert len(clips) == sum(max(0, L - T * k + 1) for L in lengths)
    seen = set()
    for index in range(len(clips)):
        item = clips[index]
        e, s = item["episode"], item["start"]
        seen.add((e, s))
        assert s + T * k <= lengths[e]
        frame_steps = item["frames"][:, 0, 0, 0].tolist()
        assert frame_steps == [s + t * k for t in range(T)] and set(item["frames"][:, 0, 0, 1].tolist()) == {
            e
        }
        raw = given[e]["actions"][s : s + T * k]
        for t in range(T):
            np.testing.assert_array_equal(item["actions"][t].numpy(), np.concatenate(raw[t * k : t * k + k]))
        np.testing.assert_allclose(
            item["rewards"].numpy(), given[e]["rewards"][s : s + T * k].reshape(T, k).sum(1), rtol=1e-6
        )
        np.testing.assert_array_equal(item["states"].numpy(), given[e]["states"][s : s + T * k : k])
        assert item["actions"].shape == (T, k * 2) and item["actions"].dtype == torch.float32
        assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (T, 10, 14, 3)
    assert len(seen) == len(clips)


def test_discrete_actions_become_one_hot(tmp_path):
    given = write_episodes(tmp_path, [6], space=DISCRETE, states=False)
    item = RolloutClips(tmp_path, num_frames=2, frame_step=2)[1]
    expected = np.eye(3, dtype=np.float32)[given[0]["actions"][1:5]].reshape(2, 6)
    np.testing.assert_array_equal(item["actions"].numpy(), expected)
    assert "states" not in item


def test_image_size_and_pickling(tmp_path):
    write_episodes(tmp_path, [6, 6])
    clips = RolloutClips(tmp_path, num_frames=4, image_size=8)
    assert clips[0]["frames"].shape == (4, 8, 8, 3)
    copy = pickle.loads(pickle.dumps(clips))  # readers are dropped, reopened on first use
    assert torch.equal(copy[3]["frames"], clips[3]["frames"])
    batch = next(iter(torch.utils.data.DataLoader(clips, batch_size=2)))
    assert batch["frames"].shape == (2, 4, 8, 8, 3)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "missing", "npz"])
def test_corrupt_episode_is_skipped_with_a_warning(tmp_path, damage):
    write_episodes(tmp_path, [5, 6, 7])
    bad = tmp_path / ("episode_000001.npz" if damage == "npz" else "episode_000001.mp4")
    if damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "truncate":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif damage == "missing":
        bad.unlink()
    else:
        bad.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match=bad.name) as record:
        clips = RolloutClips(tmp_path, num_frames=3)
    assert len(record) == 1 and clips.skipped == [str(bad)]
    assert len(clips) == (5 - 3 + 1) + (7 - 3 + 1)
    assert all(clips[i]["frames"].shape == (3, 10, 14, 3) for i in range(len(clips)))


def test_nothing_readable_raises(tmp_path):
    write_episodes(tmp_path, [4])
    (tmp_path / "episode_000000.mp4").write_bytes(b"\x00" * 100)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=str(tmp_path)):
        RolloutClips(tmp_path, num_frames=2)


def test_clip_longer_than_every_episode_raises(tmp_path):
    write_episodes(tmp_path, [4])
    with pytest.raises(ValueError, match="longest episode has 4"):
        RolloutClips(tmp_path, num_frames=3, frame_step=2)
