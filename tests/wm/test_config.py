"""JEPAConfig: defaults, presets, serialisation, and an error naming the field for every bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from torchwm.wm.config import PRESETS, JEPAConfig


def test_defaults_are_the_spec() -> None:
    cfg = JEPAConfig()
    assert cfg.image_size == 224
    assert cfg.patch_size == 16
    assert cfg.embed_dim == 768
    assert cfg.num_layers == 12
    assert cfg.num_heads == 12
    assert cfg.mask_ratio == 0.75
    assert cfg.predict_horizon == 1
    assert cfg.batch_size == 64
    assert cfg.learning_rate == 1e-4
    cfg.validate()


@pytest.mark.parametrize("name", ["tiny", "default", "reference"])
def test_presets_are_valid(name: str) -> None:
    cfg = JEPAConfig.preset(name)
    assert cfg.validate() is cfg
    for key, value in PRESETS[name].items():
        assert getattr(cfg, key) == value


def test_reference_preset_has_256_tokens() -> None:
    cfg = JEPAConfig.preset("reference")
    assert (cfg.time_steps, cfg.grid_size, cfg.num_tokens) == (4, 8, 256)


def test_preset_overrides_and_unknown_preset() -> None:
    assert JEPAConfig.preset("tiny", embed_dim=64).embed_dim == 64
    with pytest.raises(ValueError, match=r"unknown JEPAConfig preset 'huge'; choose one of \['default', 'reference', 'tiny'\]"):
        JEPAConfig.preset("huge")


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    cfg = JEPAConfig.preset("tiny", masking="random", min_learning_rate=1e-6, mask_ratio=0.6, seed=7)
    path = tmp_path / f"cfg{suffix}"
    cfg.save(path)
    assert JEPAConfig.load(path) == cfg


def test_hand_written_yaml_reads_exponent_floats(tmp_path: Path) -> None:
    # PyYAML reads `1e-4` as a string by default; the config loader must read it as the number it is.
    path = tmp_path / "cfg.yaml"
    path.write_text("learning_rate: 3e-4\nmin_learning_rate: 1e-6\nmax_steps: 10\n")
    cfg = JEPAConfig.load(path)
    assert cfg.learning_rate == 3e-4 and cfg.min_learning_rate == 1e-6 and cfg.max_steps == 10


def test_load_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        JEPAConfig.load(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        JEPAConfig.load(path)


def test_load_rejects_other_format_version(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text('{"format_version": 99, "embed_dim": 64}')
    with pytest.raises(ValueError, match="format_version 99"):
        JEPAConfig.load(path)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['mpl_ratio'\]"):
        JEPAConfig.from_dict({"mpl_ratio": 4.0})


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("embed_dim: 64\nlearnig_rate: 0.001\n")
    with pytest.raises(ValueError, match="learnig_rate"):
        JEPAConfig.load(path)


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"image_size": 60}, "image_size", "60"),  # not a multiple of patch_size 8
        ({"num_frames": 5}, "num_frames", "5"),  # not a multiple of tubelet_size 2
        ({"mask_ratio": 0.0}, "mask_ratio", "0.0"),
        ({"mask_ratio": 1.0}, "mask_ratio", "1.0"),
        ({"mask_ratio": 1.5}, "mask_ratio", "1.5"),
        ({"masking": "diagonal"}, "masking", "'diagonal'"),
        ({"encoder": "spatial"}, "tubelet_size", "2"),  # tiny has tubelet_size 2
        ({"masking": "temporal", "predict_horizon": 2}, "predict_horizon", "2"),  # 4 frames / 2 = 2 steps
        ({"masking": "temporal", "predict_horizon": 3}, "predict_horizon", "3"),
        ({"batch_size": "16"}, "batch_size", "'16'"),
        ({"embed_dim": 64.0}, "embed_dim", "64.0"),
        ({"progress": 1}, "progress", "1"),
        ({"learning_rate": "fast"}, "learning_rate", "'fast'"),
        ({"learning_rate": 0.0}, "learning_rate", "0.0"),
        ({"embed_dim": 130}, "embed_dim", "130"),  # not a multiple of num_heads 4
        ({"ema_start": 1.5}, "ema_start", "1.5"),
        ({"batch_size": 0}, "batch_size", "0"),
        ({"epochs": 0, "max_steps": 0}, "epochs", "0"),
    ],
)
def test_inconsistent_value_names_field_and_value(overrides: dict, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"JEPAConfig.{field}={value} is invalid"):
        JEPAConfig.preset("tiny", **overrides)


def test_temporal_masking_with_enough_steps_is_valid() -> None:
    cfg = JEPAConfig.preset("tiny", masking="temporal", num_frames=8, predict_horizon=3)
    assert cfg.time_steps == 4


def test_constructor_is_lazy_and_validate_catches_attribute_writes() -> None:
    cfg = JEPAConfig.preset("tiny")
    cfg.mask_ratio = 1.5
    with pytest.raises(ValueError, match="mask_ratio=1.5"):
        cfg.validate()


def test_attribute_write_is_validated_by_the_model_and_the_trainer(tiny_cfg: JEPAConfig) -> None:
    from torchwm.wm.jepa import JEPA
    from torchwm.wm.trainer import JEPAAgent

    agent = JEPAAgent(tiny_cfg)
    tiny_cfg.image_size = 36  # not a multiple of patch_size 8
    with pytest.raises(ValueError, match="image_size=36"):
        JEPA(tiny_cfg)
    with pytest.raises(ValueError, match="image_size=36"):
        agent.train()
    assert not Path(tiny_cfg.output_dir).exists()  # nothing was started


def test_derived_values_are_properties_not_fields() -> None:
    names = {f.name for f in dataclasses.fields(JEPAConfig)}
    assert not names & {"grid_size", "time_steps", "num_tokens"}
    cfg = JEPAConfig.preset("tiny")
    cfg.image_size = 32
    assert cfg.grid_size == 4 and cfg.num_tokens == 2 * 16
