"""Action-conditioned dynamics: a block-causal transformer over per-step latents, with a key/value cache.

Each time step t is a block of K latent tokens followed by one action token (and an optional
proprioception token); or, with ``action_token=False``, of the K latent tokens alone, the action (and
proprioception) embedding added to every one of them, as DINO-WM conditions its patch tokens on the action.
Tokens of step t attend to every token of steps <= t and to nothing later,
so the outputs at step t's latent positions predict z_{t+1} from (z_<=t, a_<=t). During a rollout,
the keys and values of earlier steps are cached: step h costs one step of compute, not h.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchwm.wm.layers import MLP, init_weights, sincos_1d

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [B, heads, L, d]


class KVBuffer:
    """Keys and values of a rollout, preallocated for its whole length (inference only): per layer
    ``[B, heads, L_max, d]``, filled up to ``length`` tokens. Extending it writes in place, where a list cache
    concatenates (a copy of everything so far at every step)."""

    def __init__(self, layers: int, batch: int, heads: int, max_tokens: int, head_dim: int, like: torch.Tensor) -> None:
        self.keys = [like.new_empty(batch, heads, max_tokens, head_dim) for _ in range(layers)]
        self.values = [like.new_empty(batch, heads, max_tokens, head_dim) for _ in range(layers)]
        self.length = 0

    @classmethod
    def of(cls, cache: KVCache, max_tokens: int, repeat: int = 1) -> KVBuffer:
        """A buffer holding ``cache`` (per layer ``[B, h, L, d]``), each row repeated ``repeat`` times in a row
        (``[B * repeat, h, L_max, d]``): a context computed once serves every candidate that continues it."""
        keys, _ = cache[0]
        b, h, length, d = keys.shape
        buffer = cls(len(cache), b * repeat, h, max_tokens, d, keys)
        for i, (k, v) in enumerate(cache):
            buffer.keys[i].view(b, repeat, h, max_tokens, d)[:, :, :, :length] = k[:, None]
            buffer.values[i].view(b, repeat, h, max_tokens, d)[:, :, :, :length] = v[:, None]
        buffer.length = length
        return buffer


def small_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked attention as two batched matmuls: q [B, h, M, d], k, v [B, h, L, d] -> [B, h, M, d].

    For the few queries of one rollout step on one CPU thread this took 150 us where
    ``scaled_dot_product_attention`` took 219 us (50 candidates x 4 heads x 5 queries x 40 keys)."""
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)  # (B, h, M, L)
    return torch.matmul(torch.softmax(scores, dim=-1), v)


class CachedBlock(nn.Module):
    """Pre-norm transformer block whose attention can extend a key/value cache."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: new tokens [B, M, W]; mask: [M, L_past + M] (True = may attend); returns (x, (keys, values))."""
        q, k, v = rearrange(
            self.qkv(self.norm1(x)), "b m (three h d) -> three b h m d", three=3, h=self.num_heads
        )
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, M, d)
        x = x + self.proj(rearrange(out, "b h m d -> b m (h d)"))
        return x + self.mlp(self.norm2(x)), (k, v)

    def step(
        self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int, outputs: int | None = None
    ) -> torch.Tensor:
        """Inference: new tokens x [B, M, W] that see every cached token and each other; their keys and values
        are written into ``keys``/``values`` [B, h, L_max, d] at ``start``.

        ``outputs``: return only the first ``outputs`` tokens [B, outputs, W] (every token's keys and values are
        still written): a last block whose other tokens' outputs nobody reads skips their attention and MLP."""
        q, k, v = rearrange(
            self.qkv(self.norm1(x)), "b m (three h d) -> three b h m d", three=3, h=self.num_heads
        )
        end = start + x.shape[1]
        keys[:, :, start:end], values[:, :, start:end] = k, v
        if outputs is not None:
            x, q = x[:, :outputs], q[:, :, :outputs]
        out = small_attention(q, keys[:, :, :end], values[:, :, :end])  # (B, h, M, d)
        x = x + self.proj(rearrange(out, "b h m d -> b m (h d)"))
        return x + self.mlp(self.norm2(x))


class DynamicsPredictor(nn.Module):
    """Predict the next per-step latent [.., K, D] from latents and actions, block-causally over time."""

    time_embed: torch.Tensor  # fixed sin-cos time positions [max_steps, W] (a buffer)
    proprio_mean: torch.Tensor  # [P] the data set's proprioception mean (a buffer)
    proprio_scale: torch.Tensor  # [P] and its spread

    def __init__(
        self,
        latent_dim: int,
        tokens_per_step: int,
        action_dim: int,
        width: int,
        depth: int,
        num_heads: int,
        max_steps: int = 64,
        proprio_dim: int = 0,
        residual: bool = True,
        action_token: bool = True,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.k, self.width, self.max_steps = tokens_per_step, width, max_steps
        self.residual = residual
        self.action_token = action_token
        self.has_proprio = proprio_dim > 0
        self.latent_in = nn.Linear(latent_dim, width)
        self.action_in = nn.Linear(action_dim, width)
        self.proprio_in = nn.Linear(proprio_dim, width) if self.has_proprio else None
        self.proprio_head = nn.Linear(width, proprio_dim) if self.has_proprio else None
        # Proprioception enters and leaves in units of its data set's spread (set by the trainer), so that a
        # joint angle in radians and a position in pixels weigh alike.
        # (saved only where there is proprioception: checkpoints without it keep their keys)
        self.register_buffer("proprio_mean", torch.zeros(max(proprio_dim, 1)), persistent=self.has_proprio)
        self.register_buffer("proprio_scale", torch.ones(max(proprio_dim, 1)), persistent=self.has_proprio)
        self.slot_embed = nn.Parameter(torch.zeros(self.tokens_per_block, width))  # which token of a step
        self.register_buffer("time_embed", sincos_1d(width, torch.arange(max_steps)), persistent=False)
        self.blocks = nn.ModuleList(CachedBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, latent_dim)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.slot_embed, std=0.02)

    @property
    def tokens_per_block(self) -> int:
        """Tokens of one time step: K latents, then the action and proprioception tokens if they are tokens."""
        return self.k + (1 + int(self.has_proprio) if self.action_token else 0)

    def _tokens(
        self, z: torch.Tensor, a: torch.Tensor, t0: int, proprio: torch.Tensor | None
    ) -> torch.Tensor:
        """z [B, T, K, D], a [B, T, A] -> tokens [B, T * tokens_per_block, W] for steps t0 .. t0+T-1."""
        steps = z.shape[1]
        if t0 + steps > self.max_steps:
            raise ValueError(
                f"sequence of {t0 + steps} steps exceeds the predictor's max_steps={self.max_steps}"
            )
        parts = [self.latent_in(z), self.action_in(a).unsqueeze(2)]  # (B, T, K, W), (B, T, 1, W)
        if self.has_proprio:
            if proprio is None:
                raise ValueError(
                    "this predictor was built with a proprioception input; pass proprio [B, T, P]"
                )
            assert self.proprio_in is not None  # has_proprio says it was built
            if proprio.shape[:2] != z.shape[:2]:
                raise ValueError(f"expected proprio [B, T, P] = {tuple(z.shape[:2])} + [P], got {tuple(proprio.shape)}")
            parts.append(self.proprio_in((proprio - self.proprio_mean) / self.proprio_scale).unsqueeze(2))
        if self.action_token:
            x = torch.cat(parts, dim=2)
        else:  # the conditioning added to every latent token: K tokens a step, not K + 1
            x = parts[0] + sum(parts[1:])
        x = x + self.slot_embed + self.time_embed[t0 : t0 + steps, None, :]
        return rearrange(x, "b t s w -> b (t s) w")

    def _mask(self, new_steps: int, past_steps: int, device: torch.device) -> torch.Tensor:
        """Block-causal mask [M, L] for new_steps blocks after past_steps cached blocks."""
        s = self.tokens_per_block
        q_step = torch.arange(past_steps, past_steps + new_steps, device=device).repeat_interleave(s)
        k_step = torch.arange(past_steps + new_steps, device=device).repeat_interleave(s)
        return q_step[:, None] >= k_step[None, :]

    def forward(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        cache: KVCache | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """z [B, T, K, D], actions [B, T, A] (action t follows z_t) -> (predicted z_{t+1} [B, T, K, D], cache).

        With a cache from earlier calls, the T new steps continue that sequence. A residual predictor outputs
        z_t + delta: "nothing moves" is where it starts, and it only has to learn the motion. With
        proprioception, pass ``proprio [B, T, P]``; `forward_full` also returns its prediction.
        """
        z_next, _, new_cache = self.forward_full(z, actions, cache, proprio)
        return z_next, new_cache

    def forward_full(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        cache: KVCache | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, KVCache]:
        """`forward`, with the predicted next proprioception [B, T, P] (None without a proprioception input)."""
        past = 0 if cache is None else cache[0][0].shape[2] // self.tokens_per_block
        x = self._tokens(z, actions, past, proprio)
        # One new step sees every cached step and all of its own tokens: no mask needed (a faster kernel).
        mask = None if z.shape[1] == 1 else self._mask(z.shape[1], past, z.device)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, mask, None if cache is None else cache[i])
            new_cache.append(kv)
        x = rearrange(x, "b (t s) w -> b t s w", s=self.tokens_per_block)
        z_next, p_next = self._outputs(x, z, proprio)
        return z_next, p_next, new_cache

    def _outputs(
        self, x: torch.Tensor, z: torch.Tensor, proprio: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Final tokens [B, T, s, W] -> next latents [B, T, K, D] and next proprioception [B, T, P] (or None)."""
        out = self.head(self.norm(x[:, :, : self.k]))
        z_next = z + out if self.residual else out
        if proprio is None or self.proprio_head is None:
            return z_next, None
        # The proprioception token's output (the last token of a step), or the latents' mean without tokens.
        h = x[:, :, -1] if self.action_token else x[:, :, : self.k].mean(dim=2)
        delta = self.proprio_head(self.norm(h)) * self.proprio_scale
        return z_next, (proprio + delta if self.residual else self.proprio_mean + delta)

    def decode(
        self, z: torch.Tensor, actions: torch.Tensor, buffer: KVBuffer, proprio: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inference, one new step: z [B, 1, K, D], actions [B, 1, A] after the steps in ``buffer`` (extended in
        place) -> predicted next z [B, 1, K, D]. The same numbers as `forward` with a list cache."""
        return self.decode_full(z, actions, buffer, proprio)[0]

    def decode_full(
        self, z: torch.Tensor, actions: torch.Tensor, buffer: KVBuffer, proprio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`decode`, with the predicted next proprioception [B, 1, P] (None without a proprioception input)."""
        s = self.tokens_per_block
        past = buffer.length // s
        x = self._tokens(z, actions, past, proprio)  # (B, s, W)
        if buffer.length + s > buffer.keys[0].shape[2]:
            raise ValueError(f"the rollout buffer holds {buffer.keys[0].shape[2] // s} steps; step {past + 1} is past it")
        if self.action_token and self.has_proprio:  # [K latents, action, proprio]: the action's output is unread
            x = torch.cat([x[:, : self.k], x[:, -1:], x[:, self.k : -1]], dim=1)  # [K latents, proprio, action]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            assert isinstance(block, CachedBlock)
            # The last block computes only the outputs that are read: the latents' (and proprioception's).
            x = block.step(x, buffer.keys[i], buffer.values[i], buffer.length, self._read if i == last else None)
        buffer.length += s
        return self._outputs(x[:, None], z, proprio)

    @property
    def _read(self) -> int:
        """Tokens of a step whose final outputs are read (they come first in `decode_full`'s order)."""
        return self.k + int(self.has_proprio) if self.action_token else self.k

    def empty_buffer(self, batch: int, steps: int, like: torch.Tensor) -> KVBuffer:
        """A rollout buffer with room for ``steps`` steps of ``batch`` sequences."""
        block = self.blocks[0]
        assert isinstance(block, CachedBlock)
        heads = block.num_heads
        return KVBuffer(len(self.blocks), batch, heads, steps * self.tokens_per_block, self.width // heads, like)
