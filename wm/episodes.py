"""The episode format: one module writes it and reads it.

A directory of recorded episodes::

    manifest.json            format version, env id, frame shape, action space, codec, episode list
    episode_000000.mp4       the L+1 frames o_0 .. o_L (H.264, keyframe every 8 frames)
    episode_000000.npz       actions [L, A] (discrete: [L] int64), rewards [L], terminated [L],
                             truncated [L], and states [L+1, S] when the environment gives them

An episode has L+1 frames and L actions: action t leads from frame t to frame t+1.

Writes are crash safe: video and arrays go to temporary names, are fsynced and renamed, and only
then is the manifest replaced atomically. An episode cut off by a crash never appears in the
manifest; leftover temporary files are removed the next time the directory is opened for writing.

Codecs. ``lossless=True`` writes ``libx264rgb`` with ``-qp 0`` in ``rgb24``: decord reads the frames
back bit-exact (tested). ``lossless=False`` writes ``libx264`` at ``-crf 18`` in ``yuv444p`` (no
chroma subsampling, which would smear the small coloured objects of RL frames). Both use a GOP of
8 frames without B-frames, so random access decodes at most 7 extra frames.

decord 0.6 fails on a few output widths (1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 72 pixels; dmlc/decord#336),
so frames of such a width are stored padded on the right (edge pixels repeated) and cropped on read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import einops
import imageio.v2 as imageio
import numpy as np
import torch
import torch.nn.functional as F
from torchwm.wm.checkpoint import fsync_dir, fsync_file
from torchwm.wm.runs import write_fault

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GOP = 8
"""Keyframe interval of the videos: decord's random access decodes from the previous keyframe."""

LOSSLESS_CODEC: dict[str, Any] = {
    "name": "libx264rgb",
    "pix_fmt": "rgb24",
    "params": ["-qp", "0", "-g", str(GOP), "-bf", "0", "-preset", "fast"],
}
LOSSY_CODEC: dict[str, Any] = {
    "name": "libx264",
    "pix_fmt": "yuv444p",
    "params": ["-crf", "18", "-g", str(GOP), "-bf", "0", "-preset", "fast"],
}
DECORD_BAD_WIDTHS = frozenset({1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 72})
"""Output widths at which decord 0.6 fails to copy a frame (checked for every width up to 1099)."""

NPZ_LOAD_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def decord_module():  # noqa: ANN201
    """decord, imported on first use, after pygame's image module where pygame is installed.

    decord bundles an old zlib; loaded first, it breaks PNG reading in pygame (gymnasium's classic-control
    renderers load PNG assets: Pendulum-v1 failed with "Error reading the PNG file" in any process that had
    decoded a video before). With pygame's libpng loaded first both work (checked with decord 0.6 and
    pygame 2.6), so every decord import goes through here."""
    with contextlib.suppress(ImportError):  # without pygame there is nothing to protect
        import pygame.image  # noqa: F401
    import decord

    return decord


def video_load_errors() -> tuple[type[BaseException], ...]:
    """Errors of opening or decoding a video (decord's own among them)."""
    return (decord_module().DECORDError, RuntimeError, OSError)


_NAME = re.compile(r"^episode_(\d{6,})$")
_TEMP_SUFFIXES = (".tmp.mp4", ".tmp.npz", ".json.tmp")


# ----------------------------------------------------------------------------- action spaces


def check_action_space(desc: dict[str, Any]) -> dict[str, Any]:
    """Validate a plain-dict action space description; return it in canonical JSON form.

    ``{"kind": "box", "shape": [...], "low": [...], "high": [...]}`` (low/high flattened) or
    ``{"kind": "discrete", "n": n, "start": 0}`` (``start`` optional, default 0).
    """
    kind = desc.get("kind") if isinstance(desc, dict) else None
    if kind == "box" and "shape" in desc:
        shape = [int(s) for s in desc["shape"]]
        size = int(np.prod(shape, dtype=np.int64))
        bounds = {
            key: np.broadcast_to(np.asarray(desc.get(key, default), dtype=np.float64), (size,)).tolist()
            for key, default in (("low", -np.inf), ("high", np.inf))
        }
        return {"kind": "box", "shape": shape, **bounds}
    if kind == "discrete" and int(desc.get("n", 0)) > 0:
        return {"kind": "discrete", "n": int(desc["n"]), "start": int(desc.get("start", 0))}
    raise ValueError(
        f"action space description {desc!r} is not one of {{'kind': 'box', 'shape': [...], 'low': ..., 'high': ...}} "
        "or {'kind': 'discrete', 'n': n > 0, 'start': 0}"
    )


def action_size(desc: dict[str, Any]) -> int:
    """A, the width of one float action as the model sees it (discrete: n, one-hot)."""
    check_action_space(desc)
    if desc["kind"] == "discrete":
        return int(desc["n"])
    return int(np.prod(desc["shape"], dtype=np.int64))


def actions_to_float(actions: np.ndarray, desc: dict[str, Any]) -> np.ndarray:
    """Stored actions ([L, A] float, or [L] int for discrete) -> float32 [L, A], discrete one-hot."""
    if desc["kind"] == "discrete":
        index = np.asarray(actions, dtype=np.int64).reshape(-1) - int(desc.get("start", 0))
        return np.eye(int(desc["n"]), dtype=np.float32)[index]
    return np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)


def _stored_actions(actions: np.ndarray, desc: dict[str, Any], num_steps: int) -> np.ndarray:
    """Check raw actions against the space and return them as stored: [L, A] float32 or [L] int64."""
    actions = np.asarray(actions)
    if len(actions) != num_steps:
        raise ValueError(
            f"got {len(actions)} actions for {num_steps + 1} frames; an episode has L+1 frames, L actions"
        )
    if desc["kind"] == "discrete":
        ints = actions.reshape(num_steps, -1)
        start, n = int(desc.get("start", 0)), int(desc["n"])
        if ints.shape[1] != 1 or ints.size and (ints.min() < start or ints.max() >= start + n):
            raise ValueError(
                f"discrete actions must be integers in [{start}, {start + n}), shape [L]; got {actions!r}"
            )
        return ints.reshape(num_steps).astype(np.int64)
    floats = actions.astype(np.float32).reshape(num_steps, -1)
    if floats.shape[1] != action_size(desc):
        raise ValueError(
            f"box actions have {floats.shape[1]} values a step, the space {desc['shape']} needs {action_size(desc)}"
        )
    return floats


# ----------------------------------------------------------------------------- files


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _video_width(width: int) -> int:
    """Stored width: the frame width, or the next width decord decodes correctly."""
    while width in DECORD_BAD_WIDTHS:
        width += 1
    return width


def _write_video(path: Path, frames: np.ndarray, fps: int, codec: dict[str, Any]) -> None:
    """Encode uint8 frames [T, H, W, C] (C 1 or 3) to an mp4, padding the width for decord."""
    frames = np.broadcast_to(frames, (*frames.shape[:3], 3)) if frames.shape[-1] == 1 else frames
    pad = codec["video_width"] - frames.shape[2]
    if pad:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, pad), (0, 0)), mode="edge")
    writer = imageio.get_writer(
        path, format="FFMPEG", fps=fps, codec=codec["name"], pixelformat=codec["pix_fmt"],
        quality=None, macro_block_size=1, ffmpeg_params=list(codec["params"]), ffmpeg_log_level="error",
    )  # fmt: skip
    try:
        for frame in frames:
            writer.append_data(np.ascontiguousarray(frame))
    finally:
        writer.close()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        f.flush()
        os.fsync(f.fileno())


def _clean_temp_files(root: Path) -> None:
    for path in root.iterdir():
        if path.name.endswith(_TEMP_SUFFIXES):
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- manifest


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``root/manifest.json``."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no episode manifest in {Path(root)}: expected {path} (written by wm.episodes.EpisodeWriter "
            "or envs.record.record) beside episode_*.mp4 / episode_*.npz files"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it should be an episode manifest") from e
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version!r}; this torchwm reads format_version {FORMAT_VERSION}"
        )
    return manifest


def recorded_frame_skip(manifest: dict[str, Any]) -> int:
    """The frame skip every episode of a manifest was recorded with (1 where the recorder did not say);
    episodes recorded with different skips raise `ValueError`, since one model step cannot mean both."""
    skips = {int(e.get("info", {}).get("frame_skip", 1)) for e in manifest["episodes"]}
    if len(skips) > 1:
        raise ValueError(
            f"the episodes were recorded with different frame skips {sorted(skips)}; record each skip into its "
            "own directory (torchwm record --frame-skip K --out DIR)"
        )
    return skips.pop() if skips else 1


def episode_entry(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """The manifest entry of episode ``name``."""
    for entry in manifest["episodes"]:
        if entry["name"] == name:
            return entry
    names = [e["name"] for e in manifest["episodes"]]
    raise ValueError(
        f"no episode {name!r} in the manifest; it lists {names[:5]}{' ...' if len(names) > 5 else ''}"
    )


def _new_manifest(
    env_id: str, frame_shape: tuple[int, int, int], action_space: dict[str, Any], fps: int, lossless: bool
) -> dict[str, Any]:
    codec = dict(LOSSLESS_CODEC if lossless else LOSSY_CODEC, video_width=_video_width(frame_shape[1]))
    return {
        "format_version": FORMAT_VERSION, "env_id": env_id, "frame_shape": list(frame_shape),
        "action_space": action_space, "fps": fps, "lossless": lossless, "codec": codec, "episodes": [],
    }  # fmt: skip


def _check_same(manifest: dict[str, Any], new: dict[str, Any], root: Path) -> None:
    """Refuse to append to a directory recorded with another env, frame shape or action space."""
    for key in ("env_id", "frame_shape", "action_space", "fps", "lossless"):
        if json.loads(json.dumps(new[key])) != manifest.get(key):
            raise ValueError(
                f"{root} holds episodes with {key}={manifest.get(key)!r}, cannot append episodes with "
                f"{key}={new[key]!r}; record into a new directory"
            )


# ----------------------------------------------------------------------------- writer


class EpisodeWriter:
    """Append episodes to an episode directory, crash safe.

    Opening an existing directory continues its numbering and leaves finished episodes untouched;
    it refuses (ValueError) a different env id, frame shape, action space, fps or codec.

    Example:
        >>> import tempfile
        >>> writer = EpisodeWriter(tempfile.mkdtemp(), "Fake-v0", (8, 10, 3), {"kind": "discrete", "n": 2})
        >>> frames = np.zeros((3, 8, 10, 3), np.uint8)  # L+1 = 3 frames, L = 2 actions
        >>> writer.add_episode(frames, [0, 1], [0.0, 1.0], [False, True], [False, False])
        'episode_000000'
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        env_id: str,
        frame_shape: Sequence[int],
        action_space_desc: dict[str, Any],
        fps: int = 30,
        lossless: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """``extra``: more manifest fields (the recorder's ``imports`` and ``image_size``), written when the
        directory is new."""
        shape = tuple(int(s) for s in frame_shape)
        if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
            raise ValueError(f"frame_shape must be [H, W, C] with C 1 or 3, got {list(frame_shape)}")
        self.root = Path(out_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        _clean_temp_files(self.root)
        new = {**_new_manifest(env_id, shape, check_action_space(action_space_desc), int(fps), bool(lossless)), **(extra or {})}
        if (self.root / MANIFEST).exists():
            self.manifest = read_manifest(self.root)
            _check_same(self.manifest, new, self.root)
        else:
            self.manifest = new
            _write_json_atomic(self.root / MANIFEST, self.manifest)
        self.frame_shape = shape
        self._next = self._first_free_index()

    def _first_free_index(self) -> int:
        """One past the largest episode number in the manifest or on disk (orphans are never overwritten)."""
        names = [e["name"] for e in self.manifest["episodes"]] + [p.stem for p in self.root.glob("episode_*")]
        numbers = [int(m.group(1)) for m in map(_NAME.match, names) if m]
        return max(numbers, default=-1) + 1

    @property
    def names(self) -> list[str]:
        """Names of the finished episodes, in manifest order."""
        return [e["name"] for e in self.manifest["episodes"]]

    def add_episode(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        states: np.ndarray | None = None,
        info: dict[str, Any] | None = None,
    ) -> str:
        """Write one episode and list it in the manifest; returns its name.

        Args:
            frames: uint8 [L+1, H, W, C], o_0 .. o_L.
            actions: [L, A] float (box) or [L] int (discrete).
            rewards, terminated, truncated: [L].
            states: ground-truth states [L+1, S], or None.
            info: JSON-serialisable extras kept in the manifest entry; ``info["success"]`` becomes
                the entry's ``success``.
        """
        arrays = self._episode_arrays(frames, actions, rewards, terminated, truncated, states)
        try:
            json.dumps(info)
        except TypeError as e:
            raise ValueError(
                f"info must be JSON-serialisable to go in the manifest, got {info!r} ({e})"
            ) from e
        name = f"episode_{self._next:06d}"
        files = {"video": f"{name}.mp4", "data": f"{name}.npz"}
        video_tmp, data_tmp = self.root / f"{name}.tmp.mp4", self.root / f"{name}.tmp.npz"
        entry = self._entry(name, files, arrays, info or {})
        try:
            _write_video(video_tmp, frames, self.manifest["fps"], self.manifest["codec"])
            fsync_file(video_tmp)
            _write_npz(data_tmp, arrays)
            os.replace(video_tmp, self.root / files["video"])
            os.replace(data_tmp, self.root / files["data"])
            fsync_dir(self.root)
            listed = {**self.manifest, "episodes": [*self.manifest["episodes"], entry]}
            _write_json_atomic(self.root / MANIFEST, listed)
        except (OSError, RuntimeError) as err:  # disk full, permission denied: finished episodes stay as they were
            for leftover in (video_tmp, data_tmp, self.root / (MANIFEST + ".tmp")):
                leftover.unlink(missing_ok=True)
            raise write_fault(err, self.root / name, "then record again to append the missing episodes") from err
        self.manifest["episodes"].append(entry)
        self._next += 1
        return name

    def _episode_arrays(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        states: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """Check shapes and dtypes against the manifest; return the arrays to store."""
        frames = np.asarray(frames)
        if (
            frames.dtype != np.uint8
            or frames.ndim != 4
            or tuple(frames.shape[1:]) != self.frame_shape
            or len(frames) < 2
        ):
            raise ValueError(
                f"frames must be uint8 [L+1, *{list(self.frame_shape)}] with L >= 1, got {frames.dtype} {list(frames.shape)}"
            )
        steps = len(frames) - 1
        arrays = {"actions": _stored_actions(actions, self.manifest["action_space"], steps)}
        for key, value, dtype in (
            ("rewards", rewards, np.float32),
            ("terminated", terminated, bool),
            ("truncated", truncated, bool),
        ):
            arrays[key] = np.asarray(value, dtype=dtype).reshape(-1)
            if len(arrays[key]) != steps:
                raise ValueError(f"{key} has {len(arrays[key])} entries, expected L={steps} (one per action)")
        if states is not None:
            arrays["states"] = np.asarray(states, dtype=np.float32).reshape(steps + 1, -1)
        return arrays

    def _entry(
        self, name: str, files: dict[str, str], arrays: dict[str, np.ndarray], info: dict[str, Any]
    ) -> dict[str, Any]:
        success = info.get("success")
        return {
            "name": name, "num_frames": len(arrays["rewards"]) + 1, "num_steps": len(arrays["rewards"]),
            "files": files, "return": float(arrays["rewards"].astype(np.float64).sum()),
            "success": None if success is None else bool(success),
            "terminated": bool(arrays["terminated"][-1]), "truncated": bool(arrays["truncated"][-1]),
            "state_dim": int(arrays["states"].shape[1]) if "states" in arrays else None, "info": info,
        }  # fmt: skip


# ----------------------------------------------------------------------------- readers


def _size_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"image size must be an int or (height, width) of positive ints, got {size!r}")
    return hw  # type: ignore[return-value]


class EpisodeVideo:
    """A decord reader over one episode video that returns frames as the manifest says they are.

    Crops the decord padding, restores single-channel frames, and resizes at decode time where decord
    can (else decodes full size and resizes with antialiased bilinear interpolation in torch).
    Not picklable (decord readers are not): open one per worker.
    """

    def __init__(
        self, path: str | os.PathLike[str], manifest: dict[str, Any], size: int | Sequence[int] | None = None
    ):
        self.path = Path(path)
        _, self.width, self.channels = manifest["frame_shape"]
        size_hw = _size_hw(size)
        padded = manifest["codec"]["video_width"] != self.width
        at_decode = size_hw is not None and not padded and size_hw[1] not in DECORD_BAD_WIDTHS
        self._crop = slice(None) if at_decode else slice(0, self.width)
        self._resize_after = None if at_decode else size_hw
        kwargs = {"height": size_hw[0], "width": size_hw[1]} if at_decode and size_hw else {}
        decord = decord_module()
        self.reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1, **kwargs)

    def __len__(self) -> int:
        return len(self.reader)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, C] (H, W the requested size when one was given)."""
        frames = self.reader.get_batch(list(indices)).asnumpy()
        frames = np.ascontiguousarray(frames[:, :, self._crop, : self.channels])
        if self._resize_after is None:
            return frames
        x = einops.rearrange(torch.from_numpy(frames), "t h w c -> t c h w").float()
        x = F.interpolate(x, size=self._resize_after, mode="bilinear", antialias=True, align_corners=False)
        return einops.rearrange(x.round().clamp(0, 255).to(torch.uint8), "t c h w -> t h w c").numpy()


def open_episode_video(
    root: str | os.PathLike[str],
    name: str,
    size: int | Sequence[int] | None = None,
    manifest: dict[str, Any] | None = None,
) -> EpisodeVideo:
    """Open the video of episode ``name`` for random access."""
    manifest = manifest if manifest is not None else read_manifest(root)
    return EpisodeVideo(Path(root) / episode_entry(manifest, name)["files"]["video"], manifest, size)


def episode_frames(
    root: str | os.PathLike[str], name: str, indices: Sequence[int], size: int | Sequence[int] | None = None
) -> np.ndarray:
    """Decode only the frames at ``indices`` of one episode: uint8 [len(indices), H, W, C].

    ``size`` (an int or (height, width)) resizes at decode time.
    """
    return open_episode_video(root, name, size).get(indices)


@dataclass(frozen=True)
class Episode:
    """One recorded episode, L steps.

    frames: uint8 [L+1, H, W, C] (None when loaded without frames); actions: [L, A] float32 (box) or
    [L] int64 (discrete); rewards: float32 [L]; terminated, truncated: bool [L];
    states: float32 [L+1, S] or None; entry: the manifest entry.
    """

    name: str
    frames: np.ndarray | None
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    states: np.ndarray | None
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        """L, the number of actions."""
        return len(self.rewards)


def load_episode(
    root: str | os.PathLike[str], name: str, with_frames: bool = True, manifest: dict[str, Any] | None = None
) -> Episode:
    """Load episode ``name``: its arrays, and its frames (decoded by decord) unless ``with_frames=False``."""
    manifest = manifest if manifest is not None else read_manifest(root)
    entry = episode_entry(manifest, name)
    data_path = Path(root) / entry["files"]["data"]
    with np.load(data_path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    steps = entry["num_steps"]
    if len(arrays["rewards"]) != steps or len(arrays["actions"]) != steps:
        raise ValueError(f"{data_path} holds {len(arrays['rewards'])} steps, the manifest says {steps}")
    frames = None
    if with_frames:
        frames = open_episode_video(root, name, manifest=manifest).get(range(entry["num_frames"]))
    return Episode(
        name, frames, arrays["actions"], arrays["rewards"], arrays["terminated"], arrays["truncated"],
        arrays.get("states"), entry,
    )  # fmt: skip


__all__ = [
    "Episode",
    "EpisodeVideo",
    "EpisodeWriter",
    "FORMAT_VERSION",
    "action_size",
    "actions_to_float",
    "check_action_space",
    "episode_entry",
    "episode_frames",
    "load_episode",
    "open_episode_video",
    "read_manifest",
]
