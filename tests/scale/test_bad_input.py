"""Bad input everywhere: broken files in the data sets, malformed frames, actions and latents, nonsense command
lines. Each is refused or skipped with an error that names the bad thing, never a crash deep inside torch."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchwm.agents.planners import CEM, MPPI, CEMConfig, MPPIConfig
from torchwm.wm.config import JEPAConfig
from torchwm.wm.data import ImageFolder, VideoFolder
from torchwm.wm.encoders import prepare_frames
from torchwm.wm.world_model import WorldModel, WorldModelSpec

from torchwm.cli import main

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def skip_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if str(w.message).startswith("skipping ")]


# --- a broken-file corpus ------------------------------------------------------------------------


def write_video(path: Path, frames: int = 12, faststart: bool = False) -> None:
    """An H.264 video of random 32x32 frames (``faststart``: its index before the frames)."""
    data = np.random.default_rng(0).integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
    params = ["-g", "4", *(["-movflags", "+faststart"] if faststart else [])]
    imageio.mimwrite(path, list(data), fps=10, codec="libx264", macro_block_size=1, ffmpeg_params=params)


def broken_videos(folder: Path) -> list[Path]:
    """Every kind of broken video file in ``folder``; returns their paths."""
    write_video(folder / "whole.mp4")
    data = (folder / "whole.mp4").read_bytes()
    (folder / "whole.mp4").unlink()
    write_video(folder / "indexed.mp4", faststart=True)
    indexed = (folder / "indexed.mp4").read_bytes()
    (folder / "indexed.mp4").unlink()
    broken = {
        "truncated.mp4": data[: len(data) // 2],  # the index (at the end) is gone: it does not open
        "cut_after_index.mp4": indexed[
            : -len(indexed) // 24
        ],  # half a frame short: opens, its end fails to decode
        "garbage.mp4": os.urandom(3000),
        "garbage.webm": b"\x1a\x45\xdf\xa3" + os.urandom(3000),  # an EBML magic number, then noise
        "empty.mov": b"",
        "text.mkv": b"not a video at all\n" * 20,
    }
    for name, content in broken.items():
        (folder / name).write_bytes(content)
    (folder / "x.mp4").mkdir()  # a directory with a video's name
    return [folder / name for name in [*broken, "x.mp4"]]


def broken_images(folder: Path) -> list[Path]:
    """Every kind of broken image file in ``folder``; returns their paths."""
    broken = {
        "empty.png": b"",
        "text.jpg": b"this is text, not a JPEG\n",
        "garbage.png": os.urandom(500),
        "truncated.png": b"\x89PNG\r\n\x1a\n" + os.urandom(40),  # a PNG signature, then noise
    }
    for name, content in broken.items():
        (folder / name).write_bytes(content)
    (folder / "x.png").mkdir()
    return [folder / name for name in [*broken, "x.png"]]


@pytest.mark.parametrize("layout", ["flat", "classes"])
def test_video_folder_skips_every_broken_file_by_name(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "videos"
    inner = folder / "a" if layout == "classes" else folder
    inner.mkdir(parents=True)
    broken = broken_videos(inner)
    write_video(inner / "good.mp4")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = VideoFolder(folder, image_size=16, num_frames=4)
        frames = [ds[i]["frames"] for i in range(len(ds))]  # each readable clip, or the next readable one
    assert all(f.shape == (4, 16, 16, 3) and f.dtype == torch.uint8 for f in frames)
    assert ds.classes == (["a"] if layout == "classes" else [])  # x.mp4/ is not a class
    assert sorted(ds.skipped) == sorted(map(str, broken))
    messages = skip_warnings(record)
    assert len(messages) == len(broken) and all(any(str(p) in m for m in messages) for p in broken)


def test_video_folder_with_nothing_readable_names_the_folder(tmp_path: Path) -> None:
    broken_videos(tmp_path)
    (tmp_path / "cut_after_index.mp4").unlink()  # its first frames are readable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=f"no readable video clip in {tmp_path}; looked for .mp4"):
            VideoFolder(tmp_path, image_size=16, num_frames=4)


@pytest.mark.parametrize("layout", ["flat", "classes"])
def test_image_folder_skips_every_broken_file_by_name(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "images"
    inner = folder / "a" if layout == "classes" else folder
    inner.mkdir(parents=True)
    broken = broken_images(inner)
    Image.fromarray(np.full((20, 24, 3), 7, np.uint8)).save(inner / "good.png")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = ImageFolder(folder, image_size=16, num_frames=2)
        items = [ds[i] for i in range(len(ds))]
    assert all(it["frames"].shape == (2, 16, 16, 3) and int(it["frames"][0, 0, 0, 0]) == 7 for it in items)
    assert ds.classes == (["a"] if layout == "classes" else [])
    assert sorted(ds.skipped) == sorted(map(str, broken))
    messages = skip_warnings(record)
    assert len(messages) == len(broken) and all(any(str(p) in m for m in messages) for p in broken)


def test_image_folder_with_nothing_readable_names_the_folder(tmp_path: Path) -> None:
    broken_images(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=f"no readable image (left )?in {tmp_path}"):
            ImageFolder(tmp_path, image_size=16)[0]  # empty files fail at once, undecodable ones when read


# --- frames --------------------------------------------------------------------------------------

sizes = st.integers(8, 80)


@FAST
@given(
    b=st.integers(1, 3),
    t=st.integers(1, 3),
    h=sizes,
    w=sizes,
    c=st.sampled_from([1, 3]),
    seed=st.integers(0, 9),
)
def test_prepare_frames_takes_any_uint8_frame_size(b: int, t: int, h: int, w: int, c: int, seed: int) -> None:
    frames = torch.randint(
        0, 256, (b, t, h, w, c), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    x = prepare_frames(frames, 32)
    assert x.shape == (b, t, c, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()


@FAST
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=7))
def test_prepare_frames_refuses_other_shapes_naming_them(shape: list[int]) -> None:
    if len(shape) == 5 and 0 not in shape:
        return  # a valid shape
    with pytest.raises(ValueError, match=rf"\[B, T, H, W, C\], got shape \({', '.join(map(str, shape))},?\)"):
        prepare_frames(torch.zeros(shape, dtype=torch.uint8), 32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool, torch.int8])
def test_prepare_frames_refuses_other_dtypes_naming_them(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"got dtype {dtype}"):
        prepare_frames(torch.zeros(1, 1, 8, 8, 3, dtype=dtype), 32)


@pytest.fixture(scope="module")
def world_model() -> WorldModel:
    """A one-layer temporal encoder (2-frame window) on 32x32 frames, continuous actions of size 2."""
    torch.manual_seed(0)
    cfg = JEPAConfig.preset(
        "tiny", image_size=32, num_frames=2, tubelet_size=1, embed_dim=32, num_layers=1, num_heads=4,
        predictor_dim=32, predictor_depth=1, predictor_heads=4,
    )  # fmt: skip
    spec = WorldModelSpec(
        action_dim=2, latent_dim=8, width=16, depth=1, heads=2, max_steps=16, predict_horizon=3
    )
    return WorldModel(cfg, spec).eval()


@FAST
@given(b=st.integers(1, 2), t=st.integers(1, 3), h=sizes, w=sizes, seed=st.integers(0, 9))
def test_world_model_encodes_any_uint8_frame_size(
    world_model: WorldModel, b: int, t: int, h: int, w: int, seed: int
) -> None:
    frames = torch.randint(
        0, 256, (b, t, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    z = world_model.encode(frames)
    assert z.shape == (b, t, 4, 8) and torch.isfinite(z).all()


@pytest.mark.parametrize(
    ("frames", "error", "match"),
    [
        (np.zeros((2, 32, 32, 3), np.uint8), ValueError, r"got shape \(2, 32, 32, 3\)"),
        (np.zeros((1, 2, 2, 32, 32, 3), np.uint8), ValueError, r"got shape \(1, 2, 2, 32, 32, 3\)"),
        (
            np.zeros((1, 2, 32, 32, 4), np.uint8),
            ValueError,
            r"\[B, T, H, W, 3\], got shape \(1, 2, 32, 32, 4\)",
        ),
        (np.zeros((1, 2, 32, 32, 1), np.uint8), ValueError, r"got shape \(1, 2, 32, 32, 1\)"),
        (np.zeros((1, 2, 32, 32, 3), np.float32), TypeError, "got dtype torch.float32"),
        (np.zeros((1, 2, 32, 32, 3), np.int64), TypeError, "got dtype torch.int64"),
        (np.zeros((1, 0, 32, 32, 3), np.uint8), ValueError, r"got shape \(1, 0, 32, 32, 3\)"),
    ],
)
def test_world_model_encode_names_bad_frames(
    world_model: WorldModel, frames: np.ndarray, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        world_model.encode(frames)


@FAST
@given(size=st.integers(1, 6).filter(lambda a: a != 2), horizon=st.integers(1, 4))
def test_rollout_names_expected_and_got_action_size(world_model: WorldModel, size: int, horizon: int) -> None:
    with pytest.raises(
        ValueError, match=rf"expected actions \[\.\.\., 2\], got shape \(3, {horizon}, {size}\)"
    ):
        world_model.rollout(torch.randn(3, 4, 8), torch.zeros(3, horizon, size))


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (torch.tensor([[0, 3]]), r"indices in \[0, 3\).*values in \[0, 3\]"),
        (torch.tensor([[-1, 0]]), r"indices in \[0, 3\).*values in \[-1, 0\]"),
        (torch.tensor([[0.5, 1.0]]), r"indices in \[0, 3\) or one-hot \[\.\.\., 3\]"),
    ],
)
def test_discrete_rollout_names_bad_choices(
    world_model: WorldModel, actions: torch.Tensor, match: str
) -> None:
    model = WorldModel(
        world_model.jepa_cfg,
        WorldModelSpec(action_dim=3, discrete_actions=True, latent_dim=8, width=16, heads=2),
    )
    with pytest.raises(ValueError, match=match):
        model.rollout(torch.randn(1, 4, 8), actions)


# --- planners ------------------------------------------------------------------------------------


class Cumsum:
    """z is a position [B, 1, A]; each action moves it: rollout = cumulative sum of the actions."""

    def encode_last(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return z[:, None] + actions.cumsum(dim=1)[:, :, None]  # (B, H, 1, A)


PLANNERS = [
    (CEM, CEMConfig(horizon=3, num_samples=24, num_elites=4, iterations=2, policy_prior_samples=2)),
    (
        MPPI,
        MPPIConfig(
            horizon=3, num_samples=24, num_elites=4, iterations=2, policy_prior_samples=2, init_std=2.0
        ),
    ),
]


@st.composite
def bounds(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    size = draw(st.integers(1, 3))
    low = draw(st.lists(st.floats(-1e4, 1e4), min_size=size, max_size=size))
    width = draw(st.lists(st.floats(1e-3, 1e4), min_size=size, max_size=size))
    return low, [lo + w for lo, w in zip(low, width)]


@pytest.mark.parametrize(("planner_cls", "config"), PLANNERS, ids=["cem", "mppi"])
@FAST
@given(box=bounds(), goal_scale=st.floats(-1e6, 1e6), seed=st.integers(0, 2**31))
def test_planned_actions_always_inside_random_bounds(
    planner_cls: type, config: CEMConfig, box: tuple[list[float], list[float]], goal_scale: float, seed: int
) -> None:
    low, high = torch.tensor(box[0]), torch.tensor(box[1])
    high = torch.maximum(high, torch.nextafter(low, torch.tensor(float("inf"))))  # float32 may merge them
    planner = planner_cls(Cumsum(), low, high, config)
    a = low.numel()
    z, goal = torch.zeros(2, 1, a), torch.full((2, 1, a), goal_scale)
    prior = torch.full((2, 2, 3, a), -goal_scale)  # prior sequences far outside the bounds are clamped
    for _ in range(2):  # the second call starts from the warm-started plan
        plan = planner.plan(z, goal, generator=torch.Generator().manual_seed(seed), prior_actions=prior)
        assert plan.shape == (2, 3, a) and torch.isfinite(plan).all()
        assert (plan >= low).all() and (plan <= high).all()


@pytest.mark.parametrize(
    ("low", "high", "match"),
    [
        ([0.0, 1.0], [1.0, 1.0], "action_low must be < action_high"),
        ([1.0], [-1.0], "action_low must be < action_high"),
        ([0.0], [float("nan")], "must be finite"),
        ([-np.inf], [0.0], "must be finite"),
        ([-3e38], [3e38], "high - low"),
        ([0.0, 0.0], [1.0], r"must match, got \(2,\) and \(1,\)"),
        ([], [], "one entry per action dimension"),
    ],
)
@pytest.mark.parametrize("planner_cls", [CEM, MPPI])
def test_planners_refuse_bad_bounds_naming_them(planner_cls: type, low: list, high: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        planner_cls(Cumsum(), low, high)


@pytest.mark.parametrize(
    ("z", "goal", "match"),
    [
        (torch.zeros(2, 2), torch.zeros(2, 2), r"z must be \[B, K, D\] \(or a history \[B, C, K, D\]\), got shape \(2, 2\)"),
        (
            torch.zeros(1, 2, 1, 2, 1),
            torch.zeros(1, 1, 2),
            r"z must be \[B, K, D\] \(or a history \[B, C, K, D\]\), got shape \(1, 2, 1, 2, 1\)",
        ),
        (
            torch.zeros(2, 1, 2),
            torch.zeros(3, 1, 2),
            r"z_goal must have the shape of z \(2, 1, 2\), got \(3, 1, 2\)",
        ),
        (torch.zeros(2, 1, 2), None, "needs z_goal"),
    ],
)
@pytest.mark.parametrize(("planner_cls", "config"), PLANNERS, ids=["cem", "mppi"])
def test_planners_refuse_bad_latents_naming_them(
    planner_cls: type, config: CEMConfig, z: torch.Tensor, goal: torch.Tensor | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        planner_cls(Cumsum(), [-1.0, -1.0], [1.0, 1.0], config).plan(z, goal)


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["pretrain", "--batch-size", "-1"], "batch_size=-1"),
        (["pretrain", "--image-size", "30", "--patch-size", "16"], "image_size=30"),
        (["pretrain", "--max-steps", "-5"], "max_steps=-5"),
        (["pretrain", "--dataset", "video", "--root-path", "/nonexistent/videos"], "/nonexistent/videos"),
        (["record", "--env", "torchwm/TwoRooms-v0", "--episodes", "0"], "episodes=0"),
        (["record", "--env", "torchwm/TwoRooms-v0", "--episodes", "2", "--num-envs", "0"], "num_envs=0"),
        (["record", "--env", "NoSuchEnv-v9", "--episodes", "1"], "NoSuchEnv-v9"),
    ],
)
def test_nonsense_command_line_values_exit_2_naming_the_option(
    argv: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "out")] if argv[0] == "record" else ["--output-dir", str(tmp_path / "out")]
    assert main([*argv, *out]) == 2
    err = capsys.readouterr().err
    assert f"torchwm {argv[0]}: error:" in err and option in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "argv", [["pretrain", "--batch-size", "two"], ["record", "--env", "x", "--episodes", "1.5"]]
)
def test_unparsable_values_exit_2_from_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", "unused"] if argv[0] == "record" else argv)
    assert exit_.value.code == 2
    assert f"argument {argv[-2]}: invalid int value" in capsys.readouterr().err
