"""The ``rollouts`` dataset: fixed-length clips with aligned actions from an episode directory.

Clip semantics with frame step k and T frames, starting at raw step s of an episode with L steps:

- frames at raw indices s, s+k, ..., s+(T-1)k;
- the action of clip step t is the concatenation of the k raw actions a_{s+tk} .. a_{s+tk+k-1},
  so it leads from clip frame t to clip frame t+1: actions [T, k*A];
- the reward of clip step t is the sum of those k raw rewards: rewards [T];
- a clip is valid iff s + T*k <= L (the last frame's actions exist), so clips never cross an
  episode's end.
"""

from __future__ import annotations

import bisect
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import einops
import numpy as np
import torch
from torch.utils.data import Dataset
from torchwm.wm.episodes import (
    NPZ_LOAD_ERRORS,
    EpisodeVideo,
    actions_to_float,
    load_episode,
    read_manifest,
    video_load_errors,
)

MAX_OPEN_READERS = 64
"""Video readers kept open per worker (least recently used are closed first)."""


@dataclass(frozen=True)
class EpisodeSteps:
    """The per-step arrays of one readable episode (``RolloutClips.episodes``), actions float (discrete one-hot)."""

    name: str
    video: Path
    actions: np.ndarray  # float32 [L, A]
    rewards: np.ndarray  # float32 [L]
    states: np.ndarray | None  # float32 [L+1, S]


class RolloutClips(Dataset):
    """Every clip start of every readable episode of an episode directory.

    Args:
        root: an episode directory (``manifest.json`` + videos + npz), see ``wm.episodes``.
        num_frames: T, frames per clip.
        frame_step: k, raw steps between clip frames; each clip action concatenates k raw actions.
        image_size: resize frames at decode time to this int (square) or (height, width).

    Item: ``frames`` uint8 [T, H, W, C], ``actions`` float32 [T, k*A] (discrete actions one-hot),
    ``rewards`` float32 [T], ``states`` float32 [T, S] (only when the episode has states),
    ``episode`` (index into ``self.episodes``) and ``start`` (raw step s).

    Episodes whose video or npz is missing, corrupt or shorter than the manifest says are skipped
    with one warning each and listed in ``skipped``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        num_frames: int,
        frame_step: int = 1,
        image_size: int | Sequence[int] | None = None,
    ):
        if num_frames < 1 or frame_step < 1:
            raise ValueError(
                f"num_frames and frame_step must be >= 1, got num_frames={num_frames}, frame_step={frame_step}"
            )
        self.root = Path(root)
        self.num_frames, self.frame_step, self.image_size = num_frames, frame_step, image_size
        self.manifest = read_manifest(self.root)
        self.skipped: list[str] = []
        self.episodes: list[EpisodeSteps] = []
        for entry in self.manifest["episodes"]:
            steps = self._check_episode(entry)
            if steps is not None:
                self.episodes.append(steps)
        if not self.episodes:
            raise ValueError(
                f"no readable episode in {self.root} (manifest lists {len(self.manifest['episodes'])}, skipped {self.skipped})"
            )
        counts = [max(0, len(e.rewards) - num_frames * frame_step + 1) for e in self.episodes]
        if not sum(counts):
            longest = max(len(e.rewards) for e in self.episodes)
            raise ValueError(
                f"no clip of num_frames={num_frames} with frame_step={frame_step} fits in {self.root}: a clip needs "
                f"num_frames*frame_step={num_frames * frame_step} steps, the longest episode has {longest}"
            )
        self._cumulative = np.cumsum(counts).tolist()
        self._readers: OrderedDict[int, EpisodeVideo] = OrderedDict()
        self._pid = os.getpid()

    def _check_episode(self, entry: dict[str, Any]) -> EpisodeSteps | None:
        """Load one episode's arrays and check its video opens with the right length; None if not."""
        data_path = self.root / entry["files"]["data"]
        try:
            episode = load_episode(self.root, entry["name"], with_frames=False, manifest=self.manifest)
        except NPZ_LOAD_ERRORS as e:
            self._skip(data_path, e)
            return None
        video_path = self.root / entry["files"]["video"]
        try:
            num_frames = len(EpisodeVideo(video_path, self.manifest))
        except video_load_errors() as e:
            self._skip(video_path, e)
            return None
        if num_frames != entry["num_frames"]:
            self._skip(video_path, f"{num_frames} frames, the manifest says {entry['num_frames']}")
            return None
        actions = actions_to_float(episode.actions, self.manifest["action_space"])
        return EpisodeSteps(
            entry["name"], video_path, actions, episode.rewards.astype(np.float32), episode.states
        )

    def _skip(self, path: Path, reason: object) -> None:
        warnings.warn(f"skipping unreadable episode file {path}: {reason}", stacklevel=3)
        self.skipped.append(str(path))

    def __len__(self) -> int:
        return self._cumulative[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(episode index, start step s) of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        episode = bisect.bisect_right(self._cumulative, index)
        return episode, index - (self._cumulative[episode - 1] if episode else 0)

    def video(self, episode: int) -> EpisodeVideo:
        """This worker's reader of episode ``episode``'s video, opened on first use (decord readers don't pickle)."""
        if self._pid != os.getpid():
            self._readers, self._pid = OrderedDict(), os.getpid()
        if episode not in self._readers:
            if len(self._readers) >= MAX_OPEN_READERS:
                self._readers.popitem(last=False)
            self._readers[episode] = EpisodeVideo(
                self.episodes[episode].video, self.manifest, self.image_size
            )
        self._readers.move_to_end(episode)
        return self._readers[episode]

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode, start = self.locate(index)
        steps, T, k = self.episodes[episode], self.num_frames, self.frame_step
        frame_indices = list(range(start, start + T * k, k))
        raw = slice(start, start + T * k)
        item = {
            "frames": torch.from_numpy(self.video(episode).get(frame_indices)),
            "actions": torch.from_numpy(einops.rearrange(steps.actions[raw], "(t k) a -> t (k a)", k=k)),
            "rewards": torch.from_numpy(einops.reduce(steps.rewards[raw], "(t k) -> t", "sum", k=k)),
            "episode": episode,
            "start": start,
        }
        if steps.states is not None:
            item["states"] = torch.from_numpy(
                np.ascontiguousarray(steps.states[frame_indices], dtype=np.float32)
            )
        return item

    _reader = video  # the name wm.wm_trainer calls

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        return state


__all__ = ["EpisodeSteps", "RolloutClips"]
