"""`PlanningModel`: the view of a `wm.world_model.WorldModel` that planners use (`WorldModelLike`).

A planner wants the latent of the current step only: `encode_last` computes that step alone, through the
world model's `torchwm.wm.latent_encoder.LatentEncoder` (the same code as the latent wrappers). Everything
else passes straight through to the world model.
"""

from __future__ import annotations

import torch
from torchwm.wm.latent_encoder import latent_encoder
from torchwm.wm.world_model import WorldModel


class PlanningModel:
    """``encode_last(frames [B, T, H, W, C]) -> z [B, K, D]`` of the last step; ``rollout``; ``reward``; ``value``."""

    def __init__(self, world_model: WorldModel, compile: bool = False) -> None:
        """``compile``: roll out through ``torch.compile`` (`WorldModel.compile_rollout`: faster calls after a
        first one that compiles; worth it for a control loop, not for a single plan)."""
        self.world_model = world_model.eval()
        self.encoder = latent_encoder(world_model)
        if compile:
            world_model.compile_rollout()

    @property
    def frame_history(self) -> int:
        """Frames of history the encoder needs for one step."""
        return self.world_model.window

    def encode_last(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.encoder(self.world_model.check_frames(frames))

    def rollout(
        self, z: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.world_model.rollout(z, actions, past_actions)

    def rollout_candidates(
        self,
        z_context: torch.Tensor,
        actions: torch.Tensor,
        past_actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """S candidates of each context: [B, Tc, K, D], [B, S, H, A] -> [B, S, H, K, D] (the context once)."""
        return self.world_model.rollout_candidates(z_context, actions, past_actions, proprio)

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.world_model.reward(z, actions)

    @property
    def discount(self) -> float | None:
        """The value's discount per model step; None when the world model has no value head."""
        return self.world_model.discount if self.world_model.value_head is not None else None

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.world_model.value(z)
