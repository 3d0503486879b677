"""The action-conditioned world model: causality, cached rollouts, actions, heads, training and checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from torchwm.envs.record import record
from torchwm.wm.config import JEPAConfig
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.wm_trainer import WorldModelConfig, WorldModelTrainer, world_model_loss
from torchwm.wm.wm_training import (
    init_value_scale,
    pooled_features,
    teacher_forced,
    training_latents,
    update_targets,
    value_loss,
)
from torchwm.wm.world_model import DynamicsShape, WorldModel, WorldModelSpec, cpp_compiler_available

K, D, A = 4, 8, 2  # latent_grid=2 over a 4x4 patch grid, latent width, action size


def tiny_jepa(**overrides) -> JEPAConfig:
    """A one-layer spatial encoder on 32x32 frames (a 4x4 patch grid)."""
    fields = dict(
        encoder="spatial",
        tubelet_size=1,
        num_frames=2,
        image_size=32,
        embed_dim=32,
        num_layers=1,
        num_heads=2,
        predictor_dim=32,
        predictor_depth=1,
        predictor_heads=2,
        batch_size=4,
        progress=False,
    )
    return JEPAConfig.preset("tiny", **{**fields, **overrides})


def tiny_model(freeze_encoder: bool = True, **spec) -> WorldModel:
    torch.manual_seed(0)
    fields = dict(action_dim=A, latent_dim=D, width=32, heads=2, max_steps=24, predict_horizon=4)
    return WorldModel(tiny_jepa(), WorldModelSpec(**{**fields, **spec}), freeze_encoder).eval()


@pytest.fixture(scope="module")
def model() -> WorldModel:
    return tiny_model()


def random_frames(b: int, t: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 32, 32, 3), dtype=torch.uint8, generator=gen)


# --- causality, cache and rollout -------------------------------------------------------------


@pytest.mark.parametrize("t", [0, 2, 4])
def test_changing_action_t_changes_no_prediction_before_t_plus_1(model: WorldModel, t: int) -> None:
    z, a = torch.randn(2, 6, K, D), torch.randn(2, 6, A)
    a2 = a.clone()
    a2[:, t] += 1.0
    with torch.no_grad():
        pred, _ = model.dynamics(z, a)  # pred[:, i] predicts z_{i+1}
        pred2, _ = model.dynamics(z, a2)
    torch.testing.assert_close(pred2[:, :t], pred[:, :t], rtol=0, atol=1e-6)
    assert not torch.allclose(pred2[:, t], pred[:, t])  # the prediction of z_{t+1} does see a_t


@pytest.mark.parametrize("t", [1, 3, 5])
def test_changing_z_t_changes_no_prediction_before_it(model: WorldModel, t: int) -> None:
    z, a = torch.randn(2, 6, K, D), torch.randn(2, 6, A)
    z2 = z.clone()
    z2[:, t] = torch.randn(2, K, D)
    with torch.no_grad():
        pred = teacher_forced(model, torch.cat([z, z[:, :1]], 1), torch.cat([a, a[:, :1]], 1))[0]
        pred2 = teacher_forced(model, torch.cat([z2, z[:, :1]], 1), torch.cat([a, a[:, :1]], 1))[0]
    torch.testing.assert_close(pred2[:, :t], pred[:, :t], rtol=0, atol=1e-6)
    assert not torch.allclose(pred2[:, t], pred[:, t])


def test_kv_cache_matches_recomputing_the_whole_sequence(model: WorldModel) -> None:
    z, a = torch.randn(3, 7, K, D), torch.randn(3, 7, A)
    with torch.no_grad():
        full, _ = model.dynamics(z, a)
        head, cache = model.dynamics(z[:, :3], a[:, :3])
        parts = [head]
        for t in range(3, 7):  # one step at a time, extending the cache
            pred, cache = model.dynamics(z[:, t : t + 1], a[:, t : t + 1], cache)
            parts.append(pred)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-5)
    assert cache[0][0].shape[2] == 7 * (K + 1)  # keys of every token of the 7 steps


@pytest.mark.parametrize("context", [1, 3])
def test_rollout_equals_repeated_step(model: WorldModel, context: int) -> None:
    z, actions = torch.randn(2, context, K, D), torch.randn(2, 5, A)
    past = torch.randn(2, context - 1, A)
    out = model.rollout(z, actions, past_actions=past)
    history, taken = z, torch.cat([past, actions[:, :1]], 1)
    for h in range(5):
        z_next = model.step(history, taken)
        torch.testing.assert_close(out[:, h], z_next, rtol=0, atol=1e-5)
        history = torch.cat([history, z_next[:, None]], 1)
        taken = torch.cat([taken, actions[:, h + 1 : h + 2]], 1)


@pytest.mark.parametrize("spec", [{}, {"action_token": False, "mlp_ratio": 2.0}])
@pytest.mark.parametrize("context", [1, 3])
def test_candidates_sharing_a_context_equal_rollouts_of_the_repeated_context(spec: dict, context: int) -> None:
    model = tiny_model(**spec)
    b, s = 2, 5
    z, past = torch.randn(b, context, K, D), torch.randn(b, context - 1, A)
    actions = torch.randn(b, s, 4, A)
    shared = model.rollout_candidates(z, actions, past)
    repeated = model.rollout(
        z.repeat_interleave(s, 0), actions.flatten(0, 1), past_actions=past.repeat_interleave(s, 0)
    )
    assert shared.shape == (b, s, 4, K, D)
    torch.testing.assert_close(shared.flatten(0, 1), repeated, rtol=0, atol=1e-5)
    # Each candidate's future is its own: another first action changes only that candidate's rollout.
    other = actions.clone()
    other[1, 3, 0] += 5.0
    changed = (model.rollout_candidates(z, other, past) - shared).abs().amax(dim=(2, 3, 4))
    assert changed[1, 3] > 0 and changed.flatten().topk(2).values[1] == 0


def test_the_action_conditioning_without_a_token_has_k_tokens_a_step() -> None:
    model = tiny_model(action_token=False)
    assert model.dynamics.tokens_per_block == K
    z, a = torch.randn(2, 6, K, D), torch.randn(2, 6, A)
    base, _ = model.dynamics(z, a)
    a2 = a.clone()
    a2[:, 3] += 1.0
    moved, _ = model.dynamics(z, a2)
    diff = (moved - base).abs().amax(dim=(0, 2, 3))  # per step
    assert diff[:3].max() == 0 and diff[3] > 1e-4  # the action of step 3 reaches step 3's prediction, not earlier


def test_rollout_without_past_actions_uses_zeros(model: WorldModel) -> None:
    z, actions = torch.randn(2, 3, K, D), torch.randn(2, 4, A)
    torch.testing.assert_close(
        model.rollout(z, actions), model.rollout(z, actions, past_actions=torch.zeros(2, 2, A))
    )


def test_discrete_integer_actions_equal_one_hot() -> None:
    model = tiny_model(action_dim=3, discrete_actions=True)
    z = torch.randn(4, 2, K, D)
    actions, past = torch.randint(0, 3, (4, 5)), torch.randint(0, 3, (4, 1))
    by_index = model.rollout(z, actions, past_actions=past)
    by_one_hot = model.rollout(z, F.one_hot(actions, 3).float(), past_actions=F.one_hot(past, 3).float())
    assert by_index.shape == (4, 5, K, D)
    torch.testing.assert_close(by_index, by_one_hot, rtol=0, atol=0)
    torch.testing.assert_close(model.step(z, torch.cat([past, actions[:, :1]], 1)), by_index[:, 0])
    torch.testing.assert_close(
        model.reward(z[:, 0], actions[:, 0]), model.reward(z[:, 0], F.one_hot(actions[:, 0], 3).float())
    )


# --- shapes and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 7])
def test_shapes_for_every_leading_batch_layout(model: WorldModel, b: int) -> None:
    z = model.encode(random_frames(b, 3))
    assert z.shape == (b, 3, K, D) and z.dtype == torch.float32
    actions = torch.randn(b, 4, A)
    assert model.rollout(z[:, -1], actions).shape == (b, 4, K, D)  # z context [B, K, D]
    assert model.rollout(z, actions, past_actions=torch.randn(b, 2, A)).shape == (b, 4, K, D)  # [B, Tc, K, D]
    assert model.step(z, torch.randn(b, 3, A)).shape == (b, K, D)
    assert model.reward(z, torch.randn(b, 3, A)).shape == (b, 3)
    assert model.reward(z[:, 0], actions[:, 0]).shape == (b,)


def test_wrong_action_size_names_expected_and_got(model: WorldModel) -> None:
    z = torch.randn(2, K, D)
    with pytest.raises(ValueError, match=r"expected actions \[\.\.\., 2\], got shape \(2, 4, 3\)"):
        model.rollout(z, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"expected actions \[\.\.\., 2\], got shape \(2, 1, 5\)"):
        model.step(z[:, None], torch.zeros(2, 1, 5))
    with pytest.raises(ValueError, match=r"expected actions \[\.\.\., 2\]"):
        model.rollout(z, torch.zeros(2, 4, 2), past_actions=torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match=r"past_actions \[B=2, Tc-1=2, A\].*got shape \(2, 1, 2\)"):
        model.rollout(torch.randn(2, 3, K, D), torch.zeros(2, 4, 2), past_actions=torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match=r"expected actions \[B=2, H, A\]"):
        model.rollout(z, torch.zeros(3, 4, 2))


def test_rollout_past_max_steps_is_refused(model: WorldModel) -> None:
    with pytest.raises(ValueError, match="max_steps=24"):
        model.rollout(torch.randn(1, K, D), torch.zeros(1, 30, A))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"seq_len": 0}, "seq_len"),
        ({"latent_dim": -1}, "latent_dim"),  # the shape's fields are checked by the nested config
        ({"batch_size": 2.5}, "batch_size"),
        ({"steps": True}, "steps"),
        ({"seq_len": 5, "predict_horizon": 8}, "seq_len"),
        ({"width": 30, "heads": 4}, "width"),
        ({"encoder_checkpoint": ""}, "freeze_encoder"),
    ],
)
def test_world_model_config_errors_name_the_field(overrides: dict, field: str) -> None:
    shape_fields = {k: overrides.pop(k) for k in ("latent_dim", "width", "heads") if k in overrides}
    cls = "DynamicsShape" if shape_fields else "WorldModelConfig"
    with pytest.raises(ValueError, match=rf"{cls}\.{field}"):  # a field's own range: when built
        shape = DynamicsShape(**shape_fields)
        WorldModelConfig(**{"encoder_checkpoint": "runs/jepa", "shape": shape, **overrides}).validate()


def test_a_nested_shape_comes_from_a_plain_mapping_and_from_dotted_flags(tmp_path: Path) -> None:
    from torchwm.cli import build_parser, config_from_args

    cfg = WorldModelConfig.from_dict({"encoder_checkpoint": "x", "shape": {"width": 64}})
    assert cfg.shape == DynamicsShape(width=64) and cfg.shape.heads == WorldModelSpec.heads
    (tmp_path / "wm.yaml").write_text("encoder_checkpoint: x\nshape:\n  width: 64\n  depth: 3\n")
    args = build_parser().parse_args(["train-world-model", "--config", str(tmp_path / "wm.yaml"), "--shape.heads", "2"])
    assert config_from_args(args, WorldModelConfig).shape == DynamicsShape(width=64, depth=3, heads=2)


def test_world_model_config_from_dict_names_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['latent_dims'\]"):
        WorldModelConfig.from_dict({"latent_dims": 8})


# --- heads and training -----------------------------------------------------------------------


def test_reward_head_fits_a_known_reward() -> None:
    model = tiny_model()
    gen = torch.Generator().manual_seed(1)
    z, a = torch.randn(512, K, D, generator=gen), torch.rand(512, A, generator=gen) * 2 - 1
    r = a[:, 0]  # r = a[0]
    opt = torch.optim.Adam(model.reward_head.parameters(), lr=3e-3)
    for _ in range(300):
        loss = F.mse_loss(model.reward_head(z, a), r)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert F.mse_loss(model.reward(z, a), r).item() < 1e-2  # var(r) = 1/3


def loss_cfg() -> WorldModelConfig:
    return WorldModelConfig(encoder_checkpoint="unused", seq_len=4, predict_horizon=3,
                            shape=DynamicsShape(width=32, heads=2))  # fmt: skip


def train_steps(model: WorldModel, steps: int = 3) -> None:
    """A few `WorldModelTrainer`-like steps: `world_model_loss`, AdamW on trainable params, EMA."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"frames": random_frames(3, 4), "actions": torch.randn(3, 4, A), "rewards": torch.randn(3, 4)}
    for _ in range(steps):
        terms = world_model_loss(model, loss_cfg(), batch)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        update_targets(model, 0.9)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_frozen_encoder_stays_bitwise_unchanged() -> None:
    model = tiny_model(freeze_encoder=True)
    assert model.target_encoder is None
    encoder, head, dynamics, target_head = (
        snapshot(m) for m in (model.encoder, model.head, model.dynamics, model.target_head)
    )
    train_steps(model)
    assert all(torch.equal(encoder[k], v) for k, v in model.encoder.state_dict().items())
    assert all(p.grad is None for p in model.encoder.parameters())
    assert (
        changed(head, model.head)
        and changed(dynamics, model.dynamics)
        and changed(target_head, model.target_head)
    )


def test_joint_encoder_moves_and_its_ema_target_follows_update_targets() -> None:
    model = tiny_model(freeze_encoder=False)
    assert model.target_encoder is not None
    encoder, target = snapshot(model.encoder), snapshot(model.target_encoder)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"frames": random_frames(3, 4), "actions": torch.randn(3, 4, A), "rewards": torch.randn(3, 4)}
    world_model_loss(model, loss_cfg(), batch)["total"].backward()
    opt.step()
    assert changed(encoder, model.encoder)
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert not changed(target, model.target_encoder)  # only update_targets moves the target
    online = dict(model.encoder.named_parameters())
    update_targets(model, 0.75)
    for name, p in model.target_encoder.named_parameters():
        torch.testing.assert_close(p, 0.75 * target[name] + 0.25 * online[name].detach())


# --- end to end: record -> JEPA -> world model -> checkpoint ----------------------------------


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(episode directory, JEPA run directory): 4 random TwoRooms episodes and 3 pretraining steps."""
    root = tmp_path_factory.mktemp("e2e")
    episodes = record(
        "torchwm/TwoRooms-v0",
        "random",
        episodes=4,
        out_dir=root / "episodes",
        num_envs=2,
        max_steps=20,
        progress=False,
    )
    cfg = tiny_jepa(dataset="rollouts", root_path=str(episodes), max_steps=3, output_dir=str(root / "jepa"))
    JEPAAgent(cfg).train()
    return episodes, root / "jepa"


def wm_cfg(pretrained: tuple[Path, Path], out: Path, **overrides) -> WorldModelConfig:
    episodes, jepa = pretrained
    fields = dict(
        root_path=str(episodes),
        encoder_checkpoint=str(jepa),
        steps=3,
        batch_size=4,
        seq_len=4,
        predict_horizon=3,
        shape=DynamicsShape(width=32, heads=2, latent_dim=16),
        progress=False,
        output_dir=str(out),
    )
    return WorldModelConfig(**{**fields, **overrides})


def test_trained_world_model_reloads_with_the_same_rollouts(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    trainer = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "wm"))
    trainer.run()
    loaded = WorldModel.from_pretrained(tmp_path / "wm")
    trained = trainer.model.eval()
    frames = torch.from_numpy(trainer.dataset.video(0).get([0, 1, 2]))[None]
    z = trained.encode(frames)
    assert z.shape == (1, 3, 4, 16)
    torch.testing.assert_close(loaded.encode(frames), z, rtol=0, atol=0)
    actions = torch.rand(5, 3, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    context = z[:, -1].expand(5, -1, -1)
    torch.testing.assert_close(
        loaded.rollout(context, actions), trained.rollout(context, actions), rtol=0, atol=0
    )
    torch.testing.assert_close(loaded.reward(context, actions[:, 0]), trained.reward(context, actions[:, 0]))


def test_resumed_training_ends_with_the_same_weights(
    pretrained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "whole", steps=6, checkpoint_interval=3))
    whole.run()

    cfg = wm_cfg(pretrained, tmp_path / "resumed", steps=6, checkpoint_interval=3)
    real_loss = WorldModelTrainer.loss

    def killed_at_step_4(self: WorldModelTrainer, batch: dict, step: int, log_now: bool) -> dict[str, torch.Tensor]:
        if step == 3:  # the 4th step, after the checkpoint of step 3
            raise KeyboardInterrupt
        return real_loss(self, batch, step, log_now)

    monkeypatch.setattr(WorldModelTrainer, "loss", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        WorldModelTrainer(cfg).run()
    monkeypatch.setattr(WorldModelTrainer, "loss", real_loss)
    resumed = WorldModelTrainer(cfg)
    resumed.run()
    assert resumed.step == 6
    expected = whole.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_feature_cache_chunks_keep_a_temporal_encoder_history(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    episodes, _ = pretrained
    cfg = WorldModelConfig(
        root_path=str(episodes), freeze_encoder=False, seq_len=4, predict_horizon=3, progress=False,
        output_dir=str(tmp_path / "wm"),
    )  # fmt: skip
    trainer = WorldModelTrainer(cfg)  # the "tiny" preset: a temporal encoder seeing 4 frames a step
    assert trainer.model.window == 4
    frames = torch.from_numpy(trainer.dataset.video(0).get(list(range(12))))
    whole = pooled_features(trainer.model, frames[None])[0]
    torch.testing.assert_close(trainer._pooled_in_chunks(frames, chunk=5), whole, rtol=0, atol=1e-5)


def test_frozen_encoder_region_means_are_centred_so_latents_follow_the_state(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    trainer = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "wm"))
    pooled = torch.cat(trainer.features)  # (N, K, De), every recorded step
    for head in (trainer.model.head, trainer.model.target_head):
        torch.testing.assert_close(head.feature_mean, pooled.mean(0))
        torch.testing.assert_close(head.feature_scale, (pooled - pooled.mean(0)).pow(2).mean().sqrt())
    z = trainer.model.target_head.project(pooled)
    assert z.std(0).mean() > 0.2  # uncentred, the static scene dominates and z hardly moves (~0.01)


def test_residual_dynamics_start_from_nothing_moves_and_the_flag_switches_it_off() -> None:
    z = torch.randn(3, 2, K, D)
    actions = torch.randn(3, 4, A)
    for residual in (True, False):
        model = tiny_model(residual=residual)
        torch.nn.init.zeros_(model.dynamics.head.weight)
        torch.nn.init.zeros_(model.dynamics.head.bias)
        futures = model.rollout(z, actions)  # every step predicts a zero change, or zero itself
        expected = z[:, -1:].expand(-1, 4, -1, -1) if residual else torch.zeros_like(futures)
        torch.testing.assert_close(futures, expected, rtol=0, atol=0)


def test_a_checkpoint_from_before_the_residual_flag_loads_as_a_direct_predictor(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    import json

    from torchwm.wm.checkpoint import CONFIG_FILE, resolve_checkpoint

    final = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "wm")).run()
    assert WorldModel.from_pretrained(final).spec.residual  # new checkpoints say residual=True
    config_path = resolve_checkpoint(final) / CONFIG_FILE
    config = json.loads(config_path.read_text())
    del config["spec"]["residual"]  # as written before the flag existed
    config_path.write_text(json.dumps(config))
    old = WorldModel.from_pretrained(final)
    assert not old.spec.residual and not old.dynamics.residual


def test_joint_training_centres_the_head_input_on_sampled_frames(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = wm_cfg(pretrained, tmp_path / "wm", freeze_encoder=False)
    trainer = WorldModelTrainer(cfg)
    head = trainer.model.head
    assert head.feature_scale.item() != 1.0 and head.feature_mean.abs().sum() > 0
    torch.testing.assert_close(trainer.model.target_head.feature_mean, head.feature_mean)
    frames = torch.from_numpy(trainer.dataset.video(0).get(list(range(8))))
    z = trainer.model.encode(frames[None])[0]
    assert z.std(0).mean() > 0.2  # latents of different states differ from the first step on


def test_smoothness_term_is_the_mean_squared_step_of_the_online_latent() -> None:
    from dataclasses import replace

    model = tiny_model(freeze_encoder=False)
    batch = {"frames": random_frames(3, 4), "actions": torch.randn(3, 4, A), "rewards": torch.randn(3, 4)}
    torch.manual_seed(0)
    plain = world_model_loss(model, loss_cfg(), batch)
    torch.manual_seed(0)
    smooth = world_model_loss(model, replace(loss_cfg(), smooth_weight=2.0), batch)
    z, _ = training_latents(model, batch["frames"])
    expected = (z[:, 1:] - z[:, :-1]).pow(2).mean()
    torch.testing.assert_close(smooth["smoothness"], expected)
    assert expected > 0
    torch.testing.assert_close(smooth["total"], plain["total"] + 2.0 * expected)


def test_second_phase_trains_dynamics_on_the_latent_a_joint_run_learned(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    joint = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "joint", freeze_encoder=False, smooth_weight=1.0))
    joint_ckpt = joint.run()
    source = WorldModel.from_pretrained(joint_ckpt)
    phase2 = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "dyn", encoder_checkpoint=str(joint_ckpt)))
    head_before = snapshot(phase2.model.head)
    assert not any(p.requires_grad for p in phase2.model.head.parameters())
    dynamics_before = snapshot(phase2.model.dynamics)
    loaded = WorldModel.from_pretrained(phase2.run())
    frames = torch.from_numpy(phase2.dataset.video(0).get([0, 1, 2]))[None]
    # the same latent space as the joint run's (its EMA encoder and head), and the head never moved
    torch.testing.assert_close(loaded.encode(frames), source.encode(frames), rtol=0, atol=1e-6)
    assert not changed(head_before, phase2.model.head)
    assert changed(dynamics_before, phase2.model.dynamics)


def test_second_phase_with_another_latent_shape_names_the_fields(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    joint_ckpt = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "joint", freeze_encoder=False)).run()
    cfg = wm_cfg(pretrained, tmp_path / "dyn", encoder_checkpoint=str(joint_ckpt),
                 shape=DynamicsShape(width=32, heads=2, latent_dim=8))  # fmt: skip
    with pytest.raises(ValueError, match=r"latent_dim=16.*set shape.latent_grid, shape.latent_dim and shape.pooling.*got 2, 8"):
        WorldModelTrainer(cfg)
    cfg = wm_cfg(pretrained, tmp_path / "dyn", encoder_checkpoint=str(joint_ckpt),
                 shape=DynamicsShape(width=32, heads=2, latent_dim=16, pooling="mean"))  # fmt: skip
    with pytest.raises(ValueError, match=r"pooling='patches'.*got 2, 16, 'mean'"):
        WorldModelTrainer(cfg)


def test_online_targets_equal_the_target_encoders_when_the_ema_momentum_is_zero() -> None:
    model = tiny_model(freeze_encoder=False).train()
    update_targets(model, 0.0)  # momentum 0: the targets are copies of the online weights
    frames = random_frames(2, 3)
    z, z_tgt = training_latents(model, frames)
    z_online, z_online_tgt = training_latents(model, frames, online_targets=True)
    torch.testing.assert_close(z_online, z, rtol=0, atol=1e-6)
    torch.testing.assert_close(z_online_tgt, z_tgt, rtol=0, atol=1e-6)
    assert z_online.requires_grad and not z_online_tgt.requires_grad


def test_the_preallocated_rollout_buffer_gives_the_list_cache_numbers(model: WorldModel) -> None:
    z, actions = torch.randn(3, 2, K, D), torch.randn(3, 5, A)
    fast = model.rollout(z, actions)
    with torch.inference_mode():  # the list-cache path, step by step
        first = torch.cat([torch.zeros(3, 1, A), actions[:, :1]], dim=1)
        pred, cache = model.dynamics(z, first)
        out = [pred[:, -1]]
        for h in range(1, 5):
            pred, cache = model.dynamics(out[-1].unsqueeze(1), actions[:, h : h + 1], cache)
            out.append(pred[:, -1])
    torch.testing.assert_close(fast, torch.stack(out, dim=1), rtol=0, atol=1e-5)


def test_non_finite_actions_or_latents_are_refused_with_their_index(model: WorldModel) -> None:
    z, actions = torch.randn(2, K, D), torch.randn(2, 3, A)
    actions[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"rollout's actions \(2, 3, 2\) holds a non-finite value \(nan\) at index \(1, 2, 0\)"):
        model.rollout(z, actions)
    z[0, 3, 5] = float("inf")
    with pytest.raises(ValueError, match=r"rollout's z_context \(2, 4, 8\) holds a non-finite value \(inf\) at index \(0, 3, 5\)"):
        model.rollout(z, torch.zeros(2, 3, A))


def test_a_planner_refuses_a_non_finite_latent(model: WorldModel) -> None:
    from torchwm.agents.latent_model import PlanningModel
    from torchwm.agents.planners import MPPI, MPPIConfig

    planner = MPPI(PlanningModel(model), [-1.0] * A, [1.0] * A, MPPIConfig(num_samples=8, num_elites=2, horizon=3))
    z = torch.zeros(1, K, D)
    goal = z.clone()
    goal[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"plan's z_goal \(1, 4, 8\) holds a non-finite value \(nan\) at index \(0, 0, 0\)"):
        planner.plan(z, goal)


def test_worker_decoded_batches_equal_the_in_step_ones(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = wm_cfg(pretrained, tmp_path / "wm", freeze_encoder=False, encoder_checkpoint="", encoder_preset="tiny")
    inline = WorldModelTrainer(cfg).batches(5)
    ahead = WorldModelTrainer(dataclasses.replace(cfg, num_workers=1)).batches(5)
    for _ in range(3):
        a, b = next(inline), next(ahead)
        assert a.keys() == b.keys() and "frames" in a
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# --- latent head pooling -----------------------------------------------------------------------


def test_patch_pooling_tells_apart_what_region_means_cannot() -> None:
    """Two token grids that differ only by where, inside one region, a token sits: the region means are equal,
    so ``mean`` pooling gives one latent for both; ``patches`` keeps the arrangement and gives two."""
    from torchwm.wm.world_model import LatentHead

    torch.manual_seed(0)
    grid, width = 4, 8  # 4x4 patch grid, latent_grid 2: regions of 2x2 patches
    tokens = torch.randn(1, grid * grid, width)
    swapped = tokens.clone()
    swapped[0, [0, 1]] = tokens[0, [1, 0]]  # patches (0, 0) and (0, 1): both in the top-left region
    for pooling, differ in (("mean", False), ("patches", True)):
        head = LatentHead(grid, width, 2, 16, pooling)
        a, b = head(tokens), head(swapped)
        assert a.shape == b.shape == (1, 4, 16)
        assert (not torch.allclose(a[:, 0], b[:, 0])) is differ, pooling
        torch.testing.assert_close(a[:, 1:], b[:, 1:])  # the other regions are untouched either way


def test_patch_pooling_world_model_round_trips_and_trains_with_a_frozen_encoder(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = wm_cfg(pretrained, tmp_path / "wm", shape=DynamicsShape(pooling="patches", latent_dim=D, width=32, heads=2))
    final = WorldModelTrainer(cfg).run()
    model = WorldModel.from_pretrained(final)
    assert model.spec.pooling == "patches"
    region = model.head.region
    assert model.head.proj.in_features == model.jepa_cfg.embed_dim * region * region
    z = model.encode(random_frames(2, 3))
    assert z.shape == (2, 3, K, D) and torch.isfinite(z).all()


def test_second_phase_caches_the_frozen_heads_latents_and_trains_as_from_pooled_features(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """With the encoder and the head frozen, the trainer caches latents [L+1, K, D] instead of pooled regions;
    the batches' loss is the one the pooled regions give, to the bit."""
    from torchwm.wm.wm_trainer import TrainingSequences

    joint = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "joint", freeze_encoder=False)).run()
    trainer = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "dyn", encoder_checkpoint=str(joint)))
    assert trainer.feature_kind == "latents"
    assert trainer.features[0].shape[1:] == (K, 16)  # (L+1, K, D): wm_cfg's latent_dim is 16
    pooled = [trainer._pooled_in_chunks(torch.from_numpy(trainer.dataset.video(e).get(list(range(len(f))))))
              for e, f in enumerate(trainer.features)]  # fmt: skip
    for step in range(3):
        cached = TrainingSequences(trainer.dataset, trainer.cfg, trainer.features, "latents").batch(step)
        fresh = TrainingSequences(trainer.dataset, trainer.cfg, pooled, "pooled").batch(step)
        assert "latents" in cached and "pooled" in fresh
        torch.manual_seed(0)
        a = world_model_loss(trainer.model, trainer.cfg, cached)
        torch.manual_seed(0)
        b = world_model_loss(trainer.model, trainer.cfg, fresh)
        for name in a:
            assert torch.equal(a[name], b[name]), name
    # a frozen encoder with a trainable head still caches pooled regions
    assert WorldModelTrainer(wm_cfg(pretrained, tmp_path / "one")).feature_kind == "pooled"


def test_a_training_encoder_sees_frames_decoded_once_and_the_same_batches_as_from_video(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """Phase 1 (the encoder trains) keeps every episode's decoded frames in memory; each step's batch equals,
    key by key, the one decoded from video. Over ``frame_cache_gib`` it decodes per batch and says why."""
    from torchwm.wm.wm_trainer import TrainingSequences

    cfg = wm_cfg(pretrained, tmp_path / "joint", freeze_encoder=False)
    trainer = WorldModelTrainer(cfg)
    assert trainer.feature_kind == "frames"
    assert [len(f) for f in trainer.features] == [len(trainer.dataset.video(e)) for e in range(len(trainer.features))]
    for step in range(3):
        cached = TrainingSequences(trainer.dataset, cfg, trainer.features, "frames").batch(step)
        fresh = TrainingSequences(trainer.dataset, cfg, []).batch(step)
        assert cached.keys() == fresh.keys() and "frames" in cached
        for key in cached:
            assert torch.equal(cached[key], fresh[key]), key
    with pytest.warns(UserWarning, match="frame_cache_gib"):
        small = WorldModelTrainer(dataclasses.replace(cfg, frame_cache_gib=1e-9))
    assert small.features == [] and small.feature_kind == "pooled"
    assert WorldModelTrainer(dataclasses.replace(cfg, frame_cache_gib=0)).features == []


def test_a_temporal_encoder_trains_on_the_frames_that_came_before_each_sequence(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """With a temporal encoder (4 frames a step) a training sequence carries the 3 frames before its first step
    (the episode's first frame repeated before its start), so its latents are those of the whole episode
    encoded as an environment's frame history gives it, not of clips padded at the sequence's start."""
    from torchwm.wm.wm_trainer import TrainingSequences

    episodes, _ = pretrained
    cfg = WorldModelConfig(
        root_path=str(episodes), freeze_encoder=False, seq_len=4, predict_horizon=3, batch_size=4, steps=1,
        progress=False, output_dir=str(tmp_path / "wm"),
    )  # fmt: skip
    trainer = WorldModelTrainer(cfg)
    model = trainer.model
    assert model.window == 4 and trainer.feature_kind == "frames"
    cached = TrainingSequences(trainer.dataset, cfg, trainer.features, "frames", history=3)
    decoded = TrainingSequences(trainer.dataset, cfg, [], history=3)
    for step in range(2):
        a, b = cached.batch(step), decoded.batch(step)
        assert a["frames"].shape[1] == 3 + cfg.seq_len and a["actions"].shape[1] == cfg.seq_len
        for key in a:
            assert torch.equal(a[key], b[key]), key
    whole = trainer.features[0][None]  # every frame of episode 0
    with torch.no_grad():
        z_all, _ = training_latents(model, whole, online_targets=True)
        for start in (0, 2, 5):
            index = start  # episode 0's clips come first
            assert trainer.dataset.locate(index) == (0, start)
            frames = cached.cached_item(index)["frames"][None]
            z, _ = training_latents(model, frames, online_targets=True, history=3)
            torch.testing.assert_close(z[0], z_all[0, start : start + cfg.seq_len], rtol=0, atol=1e-5)
            if start > 0:  # without the history the first steps' clips would be padded: other latents
                z_padded, _ = training_latents(model, frames[:, 3:], online_targets=True)
                assert (z_padded[0, 0] - z_all[0, start]).abs().max() > 1e-4
    trainer.run()  # a training step on those batches


@pytest.mark.skipif(not cpp_compiler_available(), reason="torch.compile on the CPU needs a C++ compiler on PATH")
def test_a_compiled_rollout_gives_the_eager_numbers_and_is_really_compiled() -> None:
    from torch._dynamo.utils import counters

    eager, fast = tiny_model(), tiny_model().compile_rollout()
    z, past, actions = torch.randn(2, 2, K, D), torch.randn(2, 1, A), torch.randn(2, 5, 4, A)
    graphs = counters["stats"]["unique_graphs"]
    torch.testing.assert_close(fast.rollout_candidates(z, actions, past), eager.rollout_candidates(z, actions, past),
                               rtol=0, atol=1e-5)  # fmt: skip
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo traced the rollout: it did not silently stay eager
    again = fast.rollout_candidates(z, actions + 0.5, past)  # the same shapes: the compiled graph again
    torch.testing.assert_close(again, eager.rollout_candidates(z, actions + 0.5, past), rtol=0, atol=1e-5)
    assert fast.compile_rollout(enabled=False)._compiled_rollout is None


def test_compiling_without_a_cpp_compiler_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"C\+\+ compiler.*compile=False"):
        tiny_model().compile_rollout()


def test_the_value_learns_the_discounted_return_of_a_cycle() -> None:
    """States 0..4 in a cycle, reward 1 on leaving state 0: V(s) = discount^((5 - s) % 5) / (1 - discount^5),
    learnt by expectile TD from sequences of four steps (deterministic: every expectile has the same answer)."""
    torch.manual_seed(0)
    model = tiny_model(value_head=True, discount=0.8)
    n, k, d = 5, model.k, model.spec.latent_dim
    states = torch.randn(n, k, d)
    init_value_scale(model, [np.array([1.0, 0, 0, 0, 0])], 1)
    assert model.value_head is not None
    optimizer = torch.optim.Adam(model.value_head.parameters(), lr=3e-3)
    for _ in range(800):
        start = torch.randint(0, n, (32,))
        index = (start[:, None] + torch.arange(4)) % n  # (B, T)
        loss = value_loss(model, states[index], (index == 0).float(), expectile=0.7)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        update_targets(model, 0.9)
    expected = torch.tensor([0.8 ** ((n - s) % n) for s in range(n)]) / (1 - 0.8**n)
    torch.testing.assert_close(model.value(states), expected, atol=0.05 * float(expected.max()), rtol=0)


def test_a_value_head_trains_with_the_world_model_and_reloads(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = wm_cfg(pretrained, tmp_path / "wm", shape=DynamicsShape(width=32, heads=2, latent_dim=16, value_head=True))
    trainer = WorldModelTrainer(cfg)
    trainer.run()
    assert "value" in trainer.last_terms and np.isfinite(trainer.last_terms["value"])
    loaded = WorldModel.from_pretrained(tmp_path / "wm")
    assert loaded.value_head is not None and float(loaded.value_head.scale) != 1.0  # units from the data's rewards
    z = torch.randn(3, loaded.k, 16)
    torch.testing.assert_close(loaded.value(z), trainer.model.eval().value(z))
    with pytest.raises(ValueError, match="without a value head"):
        tiny_model().value(z)
