"""Vector environments for stable-baselines3: a gymnasium `VectorEnv` seen as an SB3 `VecEnv`.

SB3 trains on its own `VecEnv` (lists of infos, the reset observation returned at the step that ended an
episode, the last one in ``infos[i]["terminal_observation"]``). `SB3VecEnv` adapts a gymnasium vector
environment to it, so that the batched `envs.latent.VectorLatentObservationWrapper` (one encoder call for
every sub-environment) and `envs.dream.LatentDreamVectorEnv` (one model call) train SB3 policies as they
are. `latent_vector_env` builds the first from an environment id.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import TransformObservation
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
from torchwm.envs.action_repeat import ActionRepeat
from torchwm.envs.latent import ModelSource, VectorLatentObservationWrapper, pixel_env
from torchwm.envs.reset_options import ResetOptions

__all__ = ["SB3VecEnv", "latent_vector_env", "split_infos"]


class SB3VecEnv(VecEnv):
    """A gymnasium vector environment with autoreset ``SAME_STEP`` or ``DISABLED``, as an SB3 `VecEnv`.

    With ``DISABLED`` the sub-environments that ended are reset (``reset_mask``) right after the step; with
    ``SAME_STEP`` the environment has done it. Either way ``infos[i]["terminal_observation"]`` holds the last
    observation of an episode that ended, and ``infos[i]["TimeLimit.truncated"]`` whether it was cut short,
    as SB3 expects. ``NEXT_STEP`` (gymnasium's default) cannot be adapted: it spends a step on the reset.

    Example:
        >>> venv = gym.make_vec(
        ...     "CartPole-v1", 4, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED}
        ... )
        >>> SB3VecEnv(venv).num_envs
        4
        >>> model = PPO("MlpPolicy", SB3VecEnv(venv))  # doctest: +SKIP
    """

    def __init__(self, env: VectorEnv) -> None:
        mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode == AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"SB3VecEnv needs autoreset_mode SAME_STEP or DISABLED, but {env} uses NEXT_STEP; build it with "
                "gymnasium.make_vec(..., vector_kwargs={'autoreset_mode': AutoresetMode.DISABLED})"
            )
        self.env, self.autoreset_mode = env, mode
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> VecEnvObs:
        """Reset every sub-environment with the seeds and options set by ``seed`` / ``set_options``."""
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options and self._options[0] else None
        obs, infos = self.env.reset(seed=seeds, options=options)  # type: ignore[arg-type]  # one per sub-env
        self.reset_infos = split_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        done = np.logical_or(terminated, truncated)
        list_infos = split_infos(infos, self.num_envs)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            finals = infos.get("final_obs", np.full(self.num_envs, None, dtype=object))
            final_infos = split_infos(infos.get("final_info", {}), self.num_envs)
            for i in np.flatnonzero(done).tolist():
                list_infos[i] = {**list_infos[i], **final_infos[i], "terminal_observation": finals[i]}
        elif done.any():
            for i in np.flatnonzero(done).tolist():
                list_infos[i]["terminal_observation"] = _row(obs, i)
            obs, reset_infos = self.env.reset(options={"reset_mask": done.astype(np.bool_)})
            for i, info in enumerate(split_infos(reset_infos, self.num_envs)):
                if done[i]:
                    self.reset_infos[i] = info
        for i in np.flatnonzero(done).tolist():
            list_infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, np.asarray(rewards, dtype=np.float32), done, list_infos

    def close(self) -> None:
        self.env.close()

    # --- attribute access, as far as a vector environment allows ------------------------------------
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector environment's attribute, once per requested sub-environment."""
        value = getattr(self.env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Always False: the sub-environments of a gymnasium vector environment are out of reach."""
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render()
        return [None] * self.num_envs if frames is None else [np.asarray(frame) for frame in frames]


def split_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's batched infos (``key`` with its ``_key`` mask, nested dicts too) -> one dict per sub-env."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = np.asarray(infos.get(f"_{key}", np.ones(num_envs, dtype=bool)), dtype=bool)
        nested = split_infos(value, num_envs) if isinstance(value, dict) else None
        for i in np.flatnonzero(mask).tolist():
            out[i][key] = nested[i] if nested is not None else value[i]
    return out


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {key: np.array(value[i]) for key, value in obs.items()}
    return np.array(obs[i])


def latent_vector_env(
    env_id: str,
    model: ModelSource,
    num_envs: int,
    *,
    goal: bool = False,
    reset_options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    resize: bool | None = False,
    device: str = "cpu",
    action_repeat: int = 1,
) -> SB3VecEnv:
    """``num_envs`` copies of ``env_id`` seen through the world model's encoder, for SB3, one encoder call a step.

    Observations are ``Dict(latent, goal_latent)`` with ``goal`` (the encoded ``info["goal_frame"]`` of each
    reset), else the latent alone, ``Box [K * D]``: the layouts of `envs.dream.LatentDreamEnv`, so that a
    policy moves between the two. ``reset_options`` go to every reset (e.g. ``{"different_rooms": True}``);
    ``env_kwargs`` to ``gymnasium.make`` (e.g. ``max_episode_steps``). ``resize`` as in the wrapper; by default
    (False) frames reach the model at their own size and it resizes them, as for `agents.sb3.LatentPolicyPrior`
    and the MPC agent, so that all of them see the same latents. ``action_repeat`` > 1 applies each action that
    many times (`envs.action_repeat.ActionRepeat`, inside the registered time limit, which counts env steps).
    """
    wrappers: list[Any] = [partial(pixel_env, source="auto")]
    if action_repeat > 1:
        wrappers.insert(0, partial(ActionRepeat, k=action_repeat))
    if reset_options:
        wrappers.insert(0, partial(ResetOptions, options=dict(reset_options)))
    venv = gym.make_vec(
        env_id,
        num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED},
        wrappers=wrappers,
        render_mode="rgb_array",
        **(env_kwargs or {}),
    )
    latent: VectorEnv = VectorLatentObservationWrapper(venv, model, goal=goal, resize=resize, device=device)
    if not goal:
        space = latent.single_observation_space
        assert isinstance(space, spaces.Dict)
        latent = TransformObservation(
            latent, lambda obs: obs["latent"], single_observation_space=space["latent"]
        )
    return SB3VecEnv(latent)
