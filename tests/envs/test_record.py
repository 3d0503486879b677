"""The rollout recorder (envs.record) on tiny fake environments defined here."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from torchwm.envs.record import describe_action_space, record
from torchwm.wm.episodes import load_episode, read_manifest
from torchwm.wm.rollouts import RolloutClips


class CounterPixelEnv(gymnasium.Env):
    """Pixel observations whose pixel (0, 0) holds the raw step count; reward = the step count.

    Terminates at a seed-dependent length between 4 and 9 steps; info["state"] = [step, position].
    """

    metadata = {"render_modes": []}

    def __init__(self, height: int = 10, width: int = 14):
        self.observation_space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.action_space = spaces.Discrete(3)

    def _obs(self) -> np.ndarray:
        frame = np.zeros(self.observation_space.shape, np.uint8)
        frame[0, 0, 0] = self.t
        frame[1:, :, 1] = (self.position * 20) % 256
        return frame

    def _info(self) -> dict:
        return {"state": np.array([self.t, self.position], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.position = 0, 0
        self.length = int(self.np_random.integers(4, 10))
        return self._obs(), self._info()

    def step(self, action):
        self.t += 1
        self.position += int(action) - 1
        info = self._info() | {"success": self.position > 0}
        return self._obs(), float(self.t), self.t >= self.length, False, info


class LowDimRenderEnv(gymnasium.Env):
    """A 3-d point with Box(2) actions, pixels only through render(); never terminates by itself."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = "rgb_array"):
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.x[:2] += 0.1 * np.asarray(action, np.float32)
        return self.x.copy(), -float(np.abs(self.x).sum()), False, False, {}

    def render(self):
        frame = np.zeros((12, 12, 3), np.uint8)
        frame[..., 0] = np.clip((self.x[0] + 2) * 60, 0, 255)
        return frame


@pytest.mark.parametrize("vector", ["sync", "async"])
def test_callable_policy_records_aligned_episodes(tmp_path, vector):
    out = record(
        CounterPixelEnv, lambda obs: 2, 3, tmp_path, num_envs=2, lossless=True, progress=False, vector=vector
    )
    manifest = read_manifest(out)
    assert manifest["env_id"] == "CounterPixelEnv" and manifest["action_space"] == {
        "kind": "discrete",
        "n": 3,
        "start": 0,
    }
    assert sorted(e["info"]["episode_index"] for e in manifest["episodes"]) == [0, 1, 2]
    for entry in manifest["episodes"]:
        episode = load_episode(out, entry["name"])
        L = episode.num_steps
        assert 4 <= L <= 9 and episode.frames.shape == (L + 1, 10, 14, 3)
        np.testing.assert_array_equal(episode.frames[:, 0, 0, 0], np.arange(L + 1))
        np.testing.assert_array_equal(episode.states[:, 0], np.arange(L + 1))
        np.testing.assert_array_equal(episode.actions, np.full(L, 2))
        np.testing.assert_array_equal(episode.rewards, np.arange(1, L + 1))
        assert episode.terminated.tolist() == [False] * (L - 1) + [True] and entry["success"] is True


def test_frame_skip_repeats_actions_and_sums_rewards(tmp_path):
    k = 3
    record(
        CounterPixelEnv,
        "random",
        episodes=4,
        out_dir=tmp_path,
        num_envs=3,
        frame_skip=k,
        lossless=True,
        progress=False,
    )
    for entry in read_manifest(tmp_path)["episodes"]:
        episode = load_episode(tmp_path, entry["name"])
        raw_steps = episode.frames[:, 0, 0, 0].astype(int)
        length = raw_steps[-1]  # the env's own episode length: the last frame is where it ended
        assert raw_steps.tolist() == [min(t * k, length) for t in range(len(raw_steps))]
        expected = [sum(range(a + 1, b + 1)) for a, b in zip(raw_steps[:-1], raw_steps[1:])]
        np.testing.assert_array_equal(episode.rewards, expected)
        assert episode.terminated[-1] and episode.states[-1, 0] == length


def test_max_steps_truncates(tmp_path):
    record(LowDimRenderEnv, "random", episodes=2, out_dir=tmp_path, max_steps=5, progress=False)
    for entry in read_manifest(tmp_path)["episodes"]:
        episode = load_episode(tmp_path, entry["name"], with_frames=False)
        assert episode.num_steps == 5 and episode.truncated[-1] and not episode.terminated.any()


def test_same_seed_same_episodes_whatever_num_envs(tmp_path):
    def by_index(root):
        entries = read_manifest(root)["episodes"]
        return {e["info"]["episode_index"]: load_episode(root, e["name"]) for e in entries}

    a = by_index(
        record(
            CounterPixelEnv, "random", 3, tmp_path / "a", num_envs=1, seed=7, lossless=True, progress=False
        )
    )
    b = by_index(
        record(
            CounterPixelEnv, "random", 3, tmp_path / "b", num_envs=3, seed=7, lossless=True, progress=False
        )
    )
    for i in range(3):
        np.testing.assert_array_equal(a[i].actions, b[i].actions)
        np.testing.assert_array_equal(a[i].frames, b[i].frames)
    assert any(len(a[i].actions) != len(a[0].actions) or (a[i].actions != a[0].actions).any() for i in (1, 2))


def test_sb3_model_on_rendered_low_dim_env(tmp_path):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", LowDimRenderEnv(), n_steps=16, batch_size=16, device="cpu")
    record(LowDimRenderEnv, model, episodes=2, out_dir=tmp_path, num_envs=2, max_steps=6, progress=False)
    manifest = read_manifest(tmp_path)
    assert manifest["frame_shape"] == [12, 12, 3] and manifest["action_space"]["kind"] == "box"
    episode = load_episode(tmp_path, manifest["episodes"][0]["name"])
    assert episode.frames.shape == (7, 12, 12, 3) and episode.actions.shape == (6, 2)
    assert episode.states is not None and episode.states.shape == (7, 3)  # the state observation is the state
    assert np.abs(episode.actions).max() <= 1.0


def test_env_instance_is_recorded_and_left_open(tmp_path):
    env = LowDimRenderEnv()
    record(env, "random", episodes=2, out_dir=tmp_path, max_steps=3, progress=False)
    assert len(read_manifest(tmp_path)["episodes"]) == 2
    env.reset(seed=0)


def test_interrupt_keeps_finished_episodes_only(tmp_path):
    calls = []

    def policy(obs):
        calls.append(1)
        if len(calls) == 12:
            raise KeyboardInterrupt
        return 1

    with pytest.raises(KeyboardInterrupt):
        record(CounterPixelEnv, policy, episodes=10, out_dir=tmp_path, num_envs=1, progress=False)
    entries = read_manifest(tmp_path)["episodes"]
    assert 1 <= len(entries) < 10 and sum(e["num_steps"] for e in entries) < 12
    clips = RolloutClips(tmp_path, num_frames=2)
    assert not clips.skipped and len(clips) == sum(e["num_steps"] - 1 for e in entries)
    record(CounterPixelEnv, "random", episodes=1, out_dir=tmp_path, progress=False)  # appending goes on
    assert len(read_manifest(tmp_path)["episodes"]) == len(entries) + 1


def test_registered_env_id(tmp_path):
    if "TorchwmTest/CounterPixel-v0" not in gymnasium.registry:
        gymnasium.register("TorchwmTest/CounterPixel-v0", entry_point=CounterPixelEnv)
    record("TorchwmTest/CounterPixel-v0", "random", episodes=1, out_dir=tmp_path, progress=False)
    assert read_manifest(tmp_path)["env_id"] == "TorchwmTest/CounterPixel-v0"


def test_env_without_pixels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        record(lambda: LowDimRenderEnv(render_mode=None), episodes=1, out_dir=tmp_path, progress=False)


def test_describe_action_space():
    assert describe_action_space(spaces.Discrete(4, start=1)) == {"kind": "discrete", "n": 4, "start": 1}
    assert describe_action_space(spaces.Box(-1, 1, (2,)))["high"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="MultiBinary"):
        describe_action_space(spaces.MultiBinary(3))


class ReusedBufferEnv(LowDimRenderEnv):
    """Renders every frame into one array, as renderers that keep a frame buffer do; pixel (0, 0) counts the
    renders."""

    def render(self):
        if not hasattr(self, "buffer"):
            self.buffer, self.renders = np.zeros((12, 12, 3), np.uint8), 0
        self.buffer[...] = 255 * (np.arange(12) == self.renders % 12)[None, :, None]  # a bar per render
        self.buffer[0, 0, 0], self.renders = self.renders, self.renders + 1
        return self.buffer


@pytest.mark.parametrize("image_size", [None, 6])
def test_frames_rendered_into_one_buffer_are_kept_apart(tmp_path, image_size):
    record(ReusedBufferEnv, "random", 2, tmp_path, num_envs=1, max_steps=5, lossless=True, progress=False,
           image_size=image_size)  # fmt: skip
    for entry in read_manifest(tmp_path)["episodes"]:
        frames = load_episode(tmp_path, entry["name"]).frames
        assert len(frames) == 6 and len({frame.tobytes() for frame in frames}) == 6  # none is a later one
        if image_size is None:
            assert len(set(frames[:, 0, 0, 0].tolist())) == 6


def test_a_failed_write_stops_the_recording(tmp_path, monkeypatch):
    from torchwm.wm import episodes

    add, calls = episodes.EpisodeWriter.add_episode, []

    def full_disk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return add(self, *args, **kwargs)

    monkeypatch.setattr(episodes.EpisodeWriter, "add_episode", full_disk)
    with pytest.raises(OSError, match="No space left"):
        record(CounterPixelEnv, "random", episodes=20, out_dir=tmp_path, num_envs=2, progress=False)
    assert len(read_manifest(tmp_path)["episodes"]) == 1 and len(calls) == 2  # nothing written after the error


def _seeds(folder: object) -> list[int]:
    return [e["info"]["seed"] for e in read_manifest(folder)["episodes"]]  # type: ignore[arg-type]


def test_appending_continues_after_the_highest_seed_and_never_records_a_seed_twice(tmp_path) -> None:
    record("torchwm/TwoRooms-v0", "random", 7, tmp_path, num_envs=2, max_steps=3, progress=False)
    record("torchwm/TwoRooms-v0", "random", 3, tmp_path, num_envs=2, max_steps=3, progress=False)
    assert sorted(_seeds(tmp_path)) == list(range(10))
    record("torchwm/TwoRooms-v0", "random", 2, tmp_path, seed=8, max_steps=3, progress=False)  # 8, 9 are taken
    assert sorted(_seeds(tmp_path)) == list(range(12))
    assert {e["info"]["policy"] for e in read_manifest(tmp_path)["episodes"]} == {"random"}


def test_a_resumed_recording_records_the_episodes_an_uninterrupted_one_does(tmp_path) -> None:
    record("torchwm/TwoRooms-v0", "random", 4, tmp_path / "once", seed=100, num_envs=2, max_steps=4, progress=False)
    for n in (1, 3):  # killed after one episode, then the rest of the same range
        record("torchwm/TwoRooms-v0", "random", n, tmp_path / "twice", seed=100, num_envs=2, max_steps=4,
               progress=False)  # fmt: skip
    by_seed = {}
    for name in ("once", "twice"):
        for e in read_manifest(tmp_path / name)["episodes"]:
            by_seed.setdefault(e["info"]["seed"], []).append(load_episode(tmp_path / name, e["name"]).actions)
    assert sorted(by_seed) == [100, 101, 102, 103]
    for first, second in by_seed.values():
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    ("change", "named"),
    [({"env": "torchwm/PointMass-v0"}, "env: the folder has 'torchwm/TwoRooms-v0'"),
     ({"frame_skip": 2}, "frame_skip: the folder has 1, this command asks for 2")],
)  # fmt: skip
def test_appending_another_recording_is_refused(tmp_path, change, named) -> None:
    from torchwm.wm.runs import RunMismatchError

    record("torchwm/TwoRooms-v0", "random", 1, tmp_path, max_steps=2, progress=False)
    kwargs = {"env": "torchwm/TwoRooms-v0", **change}
    with pytest.raises(RunMismatchError, match=named):
        record(kwargs.pop("env"), "random", 1, tmp_path, max_steps=2, progress=False, **kwargs)
    assert len(read_manifest(tmp_path)["episodes"]) == 1


def test_a_full_disk_stops_the_recording_in_one_error_and_keeps_the_finished_episodes(tmp_path, monkeypatch) -> None:
    import torchwm.wm.episodes as episodes
    from torchwm.wm.runs import RunWriteError

    record("torchwm/TwoRooms-v0", "random", 2, tmp_path, max_steps=2, progress=False)
    real = episodes._write_npz

    def full(path, arrays):  # a partial file, then the error a full disk gives
        path.write_bytes(b"PK")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(episodes, "_write_npz", full)
    with pytest.raises(RunWriteError, match="could not write .*episode_000002: No space left on device; free space"):
        record("torchwm/TwoRooms-v0", "random", 2, tmp_path, max_steps=2, progress=False)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    assert len(read_manifest(tmp_path)["episodes"]) == 2
    monkeypatch.setattr(episodes, "_write_npz", real)
    record("torchwm/TwoRooms-v0", "random", 2, tmp_path, max_steps=2, progress=False)
    assert sorted(_seeds(tmp_path)) == [0, 1, 2, 3]


def test_a_frame_policy_sees_the_stored_frames_goal_frames_and_episode_starts(tmp_path: Path) -> None:
    """A `FramePolicy` is handed what the recorder stores (frames resized to image_size, the reset's goal frame
    resized the same way) and which sub-environments start an episode, for every sub-environment at once."""
    from torchwm.envs.record import FrameStep

    seen: list[FrameStep] = []

    class Still:
        description = "still"

        def act(self, step: FrameStep) -> np.ndarray:
            seen.append(FrameStep(step.frames.copy(), list(step.states), None if step.goal_frames is None
                                  else step.goal_frames.copy(), step.episode_start.copy()))  # fmt: skip
            return np.zeros((len(step.frames), 2), np.float32)

    out = record("torchwm/TwoRooms-v0", Still(), 3, tmp_path / "ep", num_envs=2, max_steps=4, image_size=32,
                 seed=0, progress=False, lossless=True)  # fmt: skip
    entries = read_manifest(out)["episodes"]
    assert [e["info"]["policy"] for e in entries] == ["still"] * 3
    assert all(s.frames.shape == (2, 32, 32, 3) and s.goal_frames is not None for s in seen)
    assert seen[0].goal_frames.shape == (2, 32, 32, 3)
    assert seen[0].episode_start.tolist() == [True, True]
    assert not seen[1].episode_start.any()
    assert seen[4].episode_start.tolist() == [True, False]  # the third episode starts in sub-env 0; 1 idles
    assert len(seen) == 8
    assert all(s.states[0] is not None for s in seen)
    first = next(e for e in entries if e["info"]["episode_index"] == 0)  # started in sub-environment 0
    np.testing.assert_array_equal(load_episode(out, first["name"]).frames[0], seen[0].frames[0])
