"""Named recipes, models that save and load themselves with what they were trained on, checkpoint files
that get the user's permissions, and max_steps that trains that many steps."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from torchwm.wm.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_checkpoint
from torchwm.wm.config import JEPAConfig
from torchwm.wm.planning_spec import PlanningDefaults
from torchwm.wm.recipes import RECIPES, Recipe, get_recipe, register_recipe
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.world_model import DataFacts, WorldModel, WorldModelSpec


def tiny_world_model() -> WorldModel:
    torch.manual_seed(0)
    jepa = JEPAConfig.preset(
        "tiny", encoder="spatial", tubelet_size=1, num_frames=1, image_size=32, embed_dim=32, num_layers=1,
        num_heads=2, predictor_dim=32, predictor_depth=1, predictor_heads=2,
    )  # fmt: skip
    return WorldModel(jepa, WorldModelSpec(action_dim=2, latent_dim=8, width=32, heads=2, max_steps=16), False)


def test_every_stage_config_of_a_recipe_validates_and_carries_its_name(tmp_path: Path) -> None:
    for recipe in RECIPES.values():
        jepa = recipe.jepa_config(tmp_path / "ep", tmp_path / "jepa", seed=3).validate()
        joint = recipe.joint_config(tmp_path / "ep", tmp_path / "jepa", tmp_path / "j", seed=3).validate()
        dyn = recipe.dynamics_config(tmp_path / "ep", tmp_path / "j", tmp_path / "wm", seed=3).validate()
        assert jepa.max_steps == recipe.jepa_steps and jepa.seed == 3 and jepa.output_dir == str(tmp_path / "jepa")
        assert (joint.steps, dyn.steps) == (recipe.joint_steps, recipe.dynamics_steps)
        assert not joint.freeze_encoder and dyn.freeze_encoder and dyn.encoder_checkpoint == str(tmp_path / "j")
        assert joint.recipe == dyn.recipe == recipe.name


def test_the_temporal_recipe_differs_from_the_spatial_one_only_in_its_encoder(tmp_path: Path) -> None:
    spatial, temporal = get_recipe("two-phase"), get_recipe("two-phase-temporal")
    assert dataclasses.replace(temporal, name=spatial.name, encoder="spatial") == spatial
    jepa = temporal.jepa_config(tmp_path / "ep", tmp_path / "jepa").validate()
    assert (jepa.encoder, jepa.tubelet_size, jepa.num_frames, jepa.masking) == ("temporal", 2, 4, "temporal")
    base = spatial.jepa_config(tmp_path / "ep", tmp_path / "jepa")
    assert (base.encoder, base.tubelet_size, base.num_frames) == ("spatial", 1, 2)
    assert dataclasses.replace(jepa, encoder="spatial", tubelet_size=1, num_frames=2, masking=base.masking,
                               predict_horizon=base.predict_horizon) == base  # fmt: skip


def test_the_narrow_recipe_halves_the_dynamics_mlps_and_plans_from_a_history(tmp_path: Path) -> None:
    base, narrow = get_recipe("two-phase"), get_recipe("two-phase-narrow")
    assert dataclasses.replace(narrow, name=base.name, mlp_ratio=base.mlp_ratio, planning=base.planning) == base
    assert (narrow.planning.context_steps, narrow.planning.num_samples) == (3, 50)  # as it was measured
    assert dataclasses.replace(narrow.planning, context_steps=1, num_samples=base.planning.num_samples) == base.planning
    for cfg in (narrow.joint_config(tmp_path / "ep", tmp_path / "jepa", tmp_path / "j"),
                narrow.dynamics_config(tmp_path / "ep", tmp_path / "j", tmp_path / "wm")):  # fmt: skip
        assert cfg.validate().shape.mlp_ratio == 2.0 and cfg.recipe == "two-phase-narrow"


def test_unknown_and_duplicate_recipe_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"no recipe named 'three-phase'; known recipes: \['two-phase'"):
        get_recipe("three-phase")
    with pytest.raises(ValueError, match="'two-phase' is registered already"):
        register_recipe(Recipe("two-phase"))


def test_scaled_recipe_keeps_its_name_and_changes_only_the_budget() -> None:
    base = get_recipe("two-phase")
    small = base.scaled(episodes=10, dynamics_steps=7)
    assert (small.name, small.episodes, small.dynamics_steps) == ("two-phase", 10, 7)
    assert dataclasses.replace(small, episodes=base.episodes, dynamics_steps=base.dynamics_steps) == base


def test_save_pretrained_round_trips_weights_and_what_the_model_was_trained_on(tmp_path: Path) -> None:
    model = tiny_world_model()
    model.data = DataFacts(
        env_id="Foo-v1", imports=("foo_envs",), frame_skip=4, frame_shape=(32, 32, 3),
        action_space={"kind": "box", "shape": [2], "low": [-1, -1], "high": [1, 1]}, recipe="two-phase",
        planning=get_recipe("two-phase").planning,
    )  # fmt: skip
    path = model.save_pretrained(tmp_path / "wm")
    assert json.loads((path / CONFIG_FILE).read_text())["data"]["planning"] == get_recipe("two-phase").planning.to_dict()
    loaded = WorldModel.from_pretrained(path)
    assert loaded.data == model.data
    assert isinstance(loaded.data.planning, PlanningDefaults) and loaded.data.planning == get_recipe("two-phase").planning
    frames = torch.randint(0, 256, (1, 2, 32, 32, 3), dtype=torch.uint8)
    torch.testing.assert_close(loaded.encode(frames), model.eval().encode(frames), rtol=0, atol=0)


def test_a_checkpoint_from_before_the_data_section_loads_with_what_it_knew(tmp_path: Path) -> None:
    model = tiny_world_model()
    old = {
        "kind": "world_model", "jepa": model.jepa_cfg.to_dict(), "spec": model.spec.to_dict(),
        "train": {"freeze_encoder": False}, "env_id": "torchwm/TwoRooms-v0", "action_space": {"kind": "box"},
    }  # fmt: skip
    loaded = WorldModel.from_pretrained(save_checkpoint(tmp_path / "old", old, model.state_dict()))
    assert loaded.data.env_id == "torchwm/TwoRooms-v0" and loaded.data.frame_skip == 1
    assert loaded.data.recipe == "" and loaded.data.planning is None


def test_a_planning_spec_recorded_as_a_plain_mapping_loads_as_a_planning_defaults(tmp_path: Path) -> None:
    model = tiny_world_model()
    config = model.checkpoint_config()
    recorded = {"planner": "cem", "num_samples": 100, "horizon": 6, "max_steps": 30, "elites": 12}  # no iterations
    for planning, expected in [
        (recorded, PlanningDefaults(planner="cem", num_samples=100, iterations=None, horizon=6, max_steps=30)),
        ({**recorded, "iterations": 3, "context_steps": 2},
         PlanningDefaults(planner="cem", num_samples=100, iterations=3, horizon=6, context_steps=2, max_steps=30)),
        ({}, None),
        (None, None),
    ]:  # fmt: skip
        config["data"]["planning"] = planning
        loaded = WorldModel.from_pretrained(save_checkpoint(tmp_path / "ckpt", config, model.state_dict()))
        assert loaded.data.planning == expected and type(loaded.data.planning) is type(expected)


def test_checkpoint_files_get_the_permissions_of_any_file_the_user_writes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tiny_world_model().save_pretrained(tmp_path / "wm", {"step": 1})
        (tmp_path / "plain.txt").write_text("x")
        expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
        for name in (CONFIG_FILE, WEIGHTS_FILE, "trainer_state.pt"):
            assert stat.S_IMODE((path / name).stat().st_mode) == expected == 0o644, name
    finally:
        os.umask(old)
    assert json.loads((path / CONFIG_FILE).read_text())["data"]["frame_history"] == 1


def test_max_steps_trains_that_many_steps_however_few_epochs(image_folder: Path, tmp_path: Path) -> None:
    cfg = JEPAConfig.preset(
        "tiny", dataset="imagefolder", root_path=str(image_folder), image_folder="train", batch_size=4,
        epochs=1, max_steps=7, num_frames=1, tubelet_size=1, encoder="spatial", progress=False,
        output_dir=str(tmp_path / "run"), checkpoint_interval=100,
    )  # fmt: skip
    summary = JEPAAgent(cfg).train()  # 12 images / 4 = 3 steps an epoch: 7 steps take 3 epochs
    assert summary.steps == 7
