"""`PlanningModel`: the view of a `wm.world_model.WorldModel` that planners use (`WorldModelLike`).

The world model encodes every frame of a history (z [B, T, K, D]); a planner wants the latent of
the current step only. Everything else passes straight through.
"""

from __future__ import annotations

import torch
from torchwm.wm.world_model import WorldModel


class PlanningModel:
    """``encode(frames [B, T, H, W, C]) -> z [B, K, D]`` of the last step; ``rollout``; ``reward``."""

    def __init__(self, world_model: WorldModel, compile: bool = False) -> None:
        """``compile``: roll out through ``torch.compile`` (`WorldModel.compile_rollout`: faster calls after a
        first one that compiles; worth it for a control loop, not for a single plan)."""
        self.world_model = world_model.eval()
        if compile:
            world_model.compile_rollout()

    @property
    def frame_history(self) -> int:
        """Frames of history the encoder needs for one step."""
        return self.world_model.window

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.world_model.encode(frames)[:, -1]

    def rollout(
        self, z: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.world_model.rollout(z, actions, past_actions)

    def rollout_candidates(
        self, z_context: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """S candidates of each context: [B, Tc, K, D], [B, S, H, A] -> [B, S, H, K, D] (the context once)."""
        return self.world_model.rollout_candidates(z_context, actions, past_actions, proprio)

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.world_model.reward(z, actions)
