"""One config layer: every config dataclass shares `Config`; validation from annotations names the class, field,
value and what is allowed; dict / YAML / JSON round trips (nested configs and tuples included); presets; and a
command line generated from the fields, with --config and --preset, on every command."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
from torchwm.agents.benchmark import PlanningBenchmarkConfig, PlanningJob
from torchwm.agents.planners import CEMConfig, MPPIConfig
from torchwm.agents.policy_config import PolicyTrainingConfig
from torchwm.envs.record import RecordJob
from torchwm.wm.config import JEPAConfig
from torchwm.wm.config_base import Config
from torchwm.wm.downstream.features import FeaturesJob
from torchwm.wm.downstream.finetune import FinetuneConfig
from torchwm.wm.downstream.probes import ProbeConfig, ProbeJob
from torchwm.wm.recipes import PlanningDefaults, Recipe
from torchwm.wm.wm_trainer import WorldModelConfig
from torchwm.wm.world_model import DataFacts, WorldModelSpec

from torchwm.cli import _commands, _config_class, build_parser, main
from torchwm.demo import DemoJob
from torchwm.pipeline import FitJob

EVERY_CONFIG = [JEPAConfig, WorldModelConfig, WorldModelSpec, DataFacts, FinetuneConfig, ProbeConfig, ProbeJob,
                FeaturesJob, CEMConfig, MPPIConfig, PlanningBenchmarkConfig, PlanningJob, PolicyTrainingConfig,
                RecordJob, FitJob, DemoJob, PlanningDefaults, Recipe]  # fmt: skip


def test_every_config_dataclass_in_the_package_shares_the_base() -> None:
    import pkgutil

    import torchwm

    seen = set()
    for pkg in ("torchwm", "torchwm.wm", "torchwm.wm.downstream", "torchwm.envs", "torchwm.agents"):
        module = importlib.import_module(pkg)
        for info in pkgutil.iter_modules(module.__path__, prefix=pkg + "."):
            if info.name.endswith("__main__"):
                continue
            for obj in vars(importlib.import_module(info.name)).values():
                if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__name__.endswith(("Config", "Job")):
                    assert issubclass(obj, Config), obj
                    seen.add(obj)
    assert set(EVERY_CONFIG) - {WorldModelSpec, DataFacts, PlanningDefaults, Recipe} <= seen
    assert torchwm.__name__ == "torchwm"


@pytest.mark.parametrize(
    ("cls", "fields", "message"),
    [
        (JEPAConfig, {"mask_ratio": 1.0}, r"JEPAConfig\.mask_ratio=1\.0 is invalid: expected a number > 0 and < 1"),
        (WorldModelConfig, {"steps": 0}, r"WorldModelConfig\.steps=0 is invalid: expected an integer > 0"),
        (MPPIConfig, {"temperature": -1.0}, r"MPPIConfig\.temperature=-1\.0 is invalid: expected a number > 0"),
        (CEMConfig, {"cost": "l3"}, r"CEMConfig\.cost='l3' is invalid: expected one of \['latent_l2', 'latent_l1'"),
        (PolicyTrainingConfig, {"gamma": 1.5}, r"PolicyTrainingConfig\.gamma=1\.5 is invalid: expected a number >= 0 and <= 1"),
        (RecordJob, {"episodes": 2.5}, r"RecordJob\.episodes=2\.5 is invalid: expected an integer"),
        (PlanningBenchmarkConfig, {"planners": ("cem", "ilqr")}, r"PlanningBenchmarkConfig\.planners=\('cem', 'ilqr'\) is invalid"),
        (FinetuneConfig, {"checkpoint": "x", "flip_prob": 2.0}, r"FinetuneConfig\.flip_prob=2\.0 is invalid: expected a number >= 0 and <= 1"),
        (PlanningJob, {"checkpoint": "x", "samples": 0}, r"PlanningJob\.samples=0 is invalid: expected an integer > 0 or None"),
    ],
)  # fmt: skip
def test_a_bad_field_names_class_field_value_and_what_is_allowed(cls: type, fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls.from_dict(fields)


def test_cross_field_rules_use_the_same_form() -> None:
    with pytest.raises(ValueError, match=r"MPPIConfig\.num_elites=20 is invalid: expected <= num_samples=10"):
        MPPIConfig(num_samples=10, num_elites=20)
    with pytest.raises(ValueError, match=r"JEPAConfig\.image_size=30 is invalid: expected a multiple of patch_size=16"):
        JEPAConfig(image_size=30).validate()


def test_unknown_fields_are_listed_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"RecordJob got unknown field\(s\) \['episode'\]; known fields are: env, episodes"):
        RecordJob.from_dict({"episode": 3})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_nested_configs_and_tuples_round_trip_through_files(tmp_path: Path, suffix: str) -> None:
    cfg = PlanningBenchmarkConfig(planners=("mppi",), mppi=MPPIConfig(num_samples=64, num_elites=8), episodes=7,
                                  reset_options=())  # fmt: skip
    cfg.save(tmp_path / f"bench{suffix}")
    back = PlanningBenchmarkConfig.load(tmp_path / f"bench{suffix}")
    assert back == cfg and isinstance(back.mppi, MPPIConfig) and back.planners == ("mppi",)


def test_presets_of_every_class_include_default() -> None:
    assert FitJob.preset("default", env="E-v0", out="o") == FitJob(env="E-v0", out="o")
    assert JEPAConfig.preset_names() == ["default", "reference", "tiny"]
    with pytest.raises(ValueError, match=r"unknown FitJob preset 'fast'; choose one of \['default'\]"):
        FitJob.preset("fast")


def test_every_command_that_takes_a_config_has_config_preset_and_a_flag_per_field() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for name, _, ref, _ in _commands():
        cls = _config_class(ref)
        flags = {opt for action in subparsers[name]._actions for opt in action.option_strings}
        assert {"--config", "--preset"} <= flags, name
        for f in dataclasses.fields(cls):
            if f.name == "shape":  # a nested config: one --shape.field flag per field of it
                assert {"--shape.width", "--shape.latent-dim", "--shape.reward-head"} <= flags, name
            elif f.name == "planning":  # an optional nested config: the same
                assert {"--planning.planner", "--planning.num-samples", "--planning.horizon"} <= flags, name
            elif f.name not in ("cem", "mppi"):
                assert "--" + f.name.replace("_", "-") in flags, (name, f.name)
    names = {name for name, *_ in _commands()}
    assert {"record", "pretrain", "train-world-model", "train-policy", "features", "probe", "finetune", "fit"} <= names


def test_record_from_a_config_file_with_a_flag_on_top(tmp_path: Path) -> None:
    (tmp_path / "rec.yaml").write_text(f"env: torchwm/TwoRooms-v0\nepisodes: 5\nout: {tmp_path / 'ep'}\nmax_steps: 3\n")
    code = main(["record", "--config", str(tmp_path / "rec.yaml"), "--episodes", "2", "--num-envs", "2",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    from torchwm.wm.episodes import read_manifest

    episodes = read_manifest(tmp_path / "ep")["episodes"]
    assert len(episodes) == 2 and all(e["num_steps"] <= 3 for e in episodes)


def test_a_missing_required_value_exits_2_and_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--episodes", "1"]) == 2
    assert "RecordJob.env='' is invalid: expected a value (--env)" in capsys.readouterr().err
