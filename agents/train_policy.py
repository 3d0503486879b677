"""Training stable-baselines3 policies on a world model's latents: in the real environment, or in the dream.

    latent mode: real env --VectorLatentObservationWrapper--> latents --SB3VecEnv--> PPO / SAC
    dream mode:  start latents (recorded frames, or random steps of the real env) --LatentDreamVectorEnv--> PPO / SAC

Either way the policy observes what `envs.latent.LatentObservationWrapper` gives (the flat latent, with the
goal latent in goal mode), so `agents.sb3.LatentPolicyPrior` runs it on pixels, and an `EvalCallback`
evaluates it in the real environment during training. Written to ``cfg.out``: ``policy.zip`` (the final
policy), ``best/best_model.zip`` and ``eval/evaluations.npz`` (the EvalCallback's), ``tb/`` (TensorBoard)
and ``summary.json`` (the config, the real environment steps used, the wall-clock time).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from torchwm.agents.policy_config import PolicyTrainingConfig
from torchwm.agents.vec_env import SB3VecEnv, latent_vector_env
from torchwm.envs.dream import LatentDreamVectorEnv
from torchwm.envs.pixels import proprio_entries
from torchwm.envs.resolve import import_plugins
from torchwm.wm.runs import open_run
from torchwm.wm.world_model import WorldModel

__all__ = [
    "PolicyTrainingResult",
    "build_algorithm",
    "collect_start_latents",
    "dream_horizon",
    "train_policy",
]


@dataclass
class PolicyTrainingResult:
    """What a finished run reports (also in ``summary.json``)."""

    policy: str
    """Path of the saved SB3 model (``policy.zip``)."""
    timesteps: int
    """Timesteps learned (real in latent mode, imagined in dream mode)."""
    real_env_steps: int
    """Real environment steps spent on training (evaluation excluded), counting every repeat of an action: the
    timesteps x action_repeat in latent mode, the random steps that gave the start latents in dream mode (0
    with recorded episodes)."""
    seconds: float
    """Wall-clock time of the whole run (collection, learning, evaluation)."""


def real_env(cfg: PolicyTrainingConfig, model: WorldModel, num_envs: int) -> VecEnv:
    """The real environment seen through the model's encoder, for SB3, with episode statistics."""
    # gymnasium's TimeLimit sits under ActionRepeat and counts environment steps.
    kwargs = {"max_episode_steps": cfg.max_episode_steps * cfg.action_repeat} if cfg.max_episode_steps else {}
    env = latent_vector_env(
        cfg.env,
        model,
        num_envs,
        goal=cfg.goal,
        reset_options=cfg.reset_options_dict,
        env_kwargs=kwargs,
        action_repeat=cfg.action_repeat,
    )
    return VecMonitor(env)


def dream_horizon(cfg: PolicyTrainingConfig) -> int:
    """Dream episode length in agent steps: ``max_episode_steps``, else the real environment's registered limit
    over ``action_repeat`` (rounded up, as ActionRepeat ends its last step early), else 100."""
    if cfg.max_episode_steps:
        return cfg.max_episode_steps
    registered = gym.spec(cfg.env).max_episode_steps
    return -(-registered // cfg.action_repeat) if registered else 100


def collect_start_latents(
    env: VecEnv, steps: int, seed: int, k: int, d: int, proprio: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    """Latents ``[N, K, D]`` of about ``steps`` steps of uniformly random actions in ``env`` (N >= steps), and
    with ``proprio`` (state entries) the proprioception ``[N, P]`` of the same steps from ``info["state"]``
    (None without): the starts of a dream for a model trained with proprioception."""
    env.seed(seed)
    env.action_space.seed(seed)
    obs = env.reset()
    base = env.unwrapped  # a VecMonitor's own reset_infos stay empty; the innermost VecEnv's are the real ones
    infos = list(base.reset_infos)
    latents, states = [], []
    for _ in range(-(-steps // env.num_envs)):
        latents.append(obs["latent"] if isinstance(obs, dict) else obs)
        if proprio:
            found = [info.get("state") for info in infos]
            state = None if any(s is None for s in found) else np.stack([np.asarray(s) for s in found])
            states.append(proprio_entries(state, proprio, str(env.unwrapped)))
        actions = np.stack([env.action_space.sample() for _ in range(env.num_envs)])
        obs, _, done, infos = env.step(actions)
        # an episode that ended came back reset: its observation is the new episode's, as is its reset info
        infos = [base.reset_infos[i] if done[i] else info for i, info in enumerate(infos)]
    flat = np.concatenate(latents)  # (N, K * D)
    starts = flat.reshape(len(flat), k, d).astype(np.float32)
    return starts, (np.concatenate(states).astype(np.float32) if proprio else None)


def dream_env(
    cfg: PolicyTrainingConfig, model: WorldModel, starts: Any, action_space: spaces.Space,
    start_proprio: np.ndarray | None = None,
) -> VecEnv:
    """``cfg.num_envs`` dream environments in one batched model call, for SB3, with episode statistics."""
    dream = LatentDreamVectorEnv(
        cfg.num_envs,
        model,
        starts,
        start_proprio=start_proprio,
        horizon=dream_horizon(cfg),
        reward=cfg.dream_reward,
        goal=cfg.goal,
        context=cfg.dream_context,
        action_space=action_space if isinstance(action_space, spaces.Box) else None,
        device=cfg.device,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    return VecMonitor(SB3VecEnv(dream))


def build_algorithm(cfg: PolicyTrainingConfig, env: VecEnv, tensorboard_log: str | None) -> BaseAlgorithm:
    """PPO or SAC with an MLP (``MultiInputPolicy`` for Dict observations) of ``net_depth`` x ``net_width``."""
    policy = "MultiInputPolicy" if isinstance(env.observation_space, spaces.Dict) else "MlpPolicy"
    common: dict[str, Any] = {
        "learning_rate": cfg.learning_rate,
        "gamma": cfg.gamma,
        "batch_size": cfg.batch_size,
        "policy_kwargs": {"net_arch": [cfg.net_width] * cfg.net_depth},
        "tensorboard_log": tensorboard_log,
        "seed": cfg.seed,
        "device": cfg.device,
        "verbose": cfg.verbose,
    }
    if cfg.algo == "ppo":
        return PPO(policy, env, n_steps=cfg.n_steps, n_epochs=cfg.n_epochs, **common)
    if not isinstance(env.action_space, spaces.Box):
        raise ValueError(f"SAC needs a continuous (Box) action space; {cfg.env} has {env.action_space}")
    return SAC(policy, env, learning_starts=cfg.learning_starts, buffer_size=cfg.buffer_size, **common)


def train_policy(cfg: PolicyTrainingConfig, model: WorldModel | None = None) -> PolicyTrainingResult:
    """Train a policy as ``cfg`` says and save it into the run folder ``cfg.out`` (its identity checked and its
    lock held meanwhile); ``model`` (else loaded from ``cfg.checkpoint``) gives the latents.

    Sets torch's CPU threads to ``cfg.threads`` (when above 0) for the process.
    """
    cfg.validate()
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if model is None:
        model = WorldModel.from_pretrained(cfg.checkpoint, cfg.device)
    import_plugins((*model.data.imports, *cfg.imports))  # the checkpoint's plugin modules, and any more given
    with open_run(cfg.out, "train-policy", cfg.run_identity(), overwrite=cfg.overwrite):
        return _train(cfg, model, Path(cfg.out), start)


def _train(cfg: PolicyTrainingConfig, model: WorldModel, out: Path, start: float) -> PolicyTrainingResult:
    """Learn, save ``policy.zip`` and ``summary.json`` into the open run folder ``out``."""
    env, real_steps = _training_env(cfg, model)
    algo = build_algorithm(cfg, env, str(out / "tb") if cfg.tensorboard else None)
    callback = None
    if cfg.eval_freq:
        callback = EvalCallback(
            real_env(cfg, model, 1),
            n_eval_episodes=cfg.eval_episodes,
            eval_freq=max(1, cfg.eval_freq // cfg.num_envs),
            log_path=str(out / "eval"),
            best_model_save_path=str(out / "best"),
            deterministic=True,
            verbose=cfg.verbose,
        )
    algo.learn(
        cfg.steps, callback=callback, progress_bar=cfg.progress_bar, tb_log_name=f"{cfg.algo}_{cfg.mode}"
    )
    path = out / "policy.zip"
    algo.save(path)
    env.close()
    if cfg.mode == "latent":
        real_steps = int(algo.num_timesteps) * cfg.action_repeat
    result = PolicyTrainingResult(str(path), int(algo.num_timesteps), real_steps, time.perf_counter() - start)
    summary = {"config": dataclasses.asdict(cfg), **dataclasses.asdict(result)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return result


def _training_env(cfg: PolicyTrainingConfig, model: WorldModel) -> tuple[VecEnv, int]:
    """The environment to learn in, and the real steps spent to build it."""
    real = real_env(cfg, model, cfg.num_envs)
    if cfg.mode == "latent":
        return real, 0
    starts: str | np.ndarray
    proprio = None  # from the recorded episodes' states when starts is a directory
    if cfg.dream_starts:
        starts, steps = cfg.dream_starts, 0
    else:
        k, d = model.k, model.spec.latent_dim
        dims = tuple(model.data.proprio) if model.spec.proprio_dim else ()
        starts, proprio = collect_start_latents(real, cfg.dream_start_steps, cfg.seed, k, d, dims)
        steps = len(starts) * cfg.action_repeat
    action_space = real.action_space
    real.close()
    return dream_env(cfg, model, starts, action_space, proprio), steps
