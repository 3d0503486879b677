"""The ``torchwm`` command line: options generated from JEPAConfig, errors as exit code 2 naming the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from torchwm.wm.checkpoint import latest_checkpoint
from torchwm.wm.config import JEPAConfig

from torchwm.cli import main

TINY = [
    "--image-size", "32", "--embed-dim", "32", "--num-layers", "1", "--num-heads", "2",
    "--predictor-dim", "32", "--predictor-depth", "1", "--predictor-heads", "2",
    "--batch-size", "2", "--synthetic-clips", "8", "--warmup-steps", "1",
]  # fmt: skip


def test_pretrain_tiny_writes_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = [
        "pretrain",
        "--preset",
        "tiny",
        "--max-steps",
        "2",
        "--output-dir",
        str(out),
        "--no-progress",
        *TINY,
    ]
    assert main(argv) == 0
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.name == "step_00000002"
    assert "done: 2 steps" in capsys.readouterr().out
    saved = JEPAConfig.load(out / "config.yaml")
    # patch_size comes from the tiny preset, the rest from the command line
    assert (saved.image_size, saved.embed_dim, saved.patch_size, saved.progress) == (32, 32, 8, False)


def test_invalid_value_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["pretrain", "--preset", "tiny", "--mask-ratio", "1.5", "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "torchwm pretrain: error:" in err and "mask_ratio=1.5" in err
    assert not (tmp_path / "run").exists()


def test_config_file_with_command_line_override(tmp_path: Path) -> None:
    cfg = JEPAConfig.preset("tiny", image_size=32, embed_dim=32, num_layers=1, num_heads=2, predictor_dim=32)
    cfg = dataclasses.replace(cfg, predictor_depth=1, predictor_heads=2, batch_size=2, synthetic_clips=8)
    path = tmp_path / "cfg.yaml"
    cfg.save(path)
    out = tmp_path / "run"
    assert (
        main(
            ["pretrain", "--config", str(path), "--max-steps", "1", "--output-dir", str(out), "--no-progress"]
        )
        == 0
    )
    saved = JEPAConfig.load(out / "config.yaml")
    assert saved == dataclasses.replace(cfg, max_steps=1, output_dir=str(out), progress=False)


def test_partial_config_file_layers_on_the_preset(tmp_path: Path) -> None:
    # A hand-written file sets a few fields; the rest come from the preset, not from the defaults.
    path = tmp_path / "small.yaml"
    path.write_text("image_size: 32\nlearning_rate: 3e-4\nmasking: temporal\n")
    out = tmp_path / "run"
    argv = [
        "pretrain",
        "--preset",
        "tiny",
        "--config",
        str(path),
        "--max-steps",
        "1",
        "--output-dir",
        str(out),
    ]
    assert main([*argv, "--no-progress", *TINY[2:]]) == 0
    saved = JEPAConfig.load(out / "config.yaml")
    assert (saved.patch_size, saved.num_frames, saved.tubelet_size) == (8, 4, 2)  # from tiny
    assert (saved.image_size, saved.learning_rate, saved.masking) == (32, 3e-4, "temporal")  # from the file
    assert saved.embed_dim == 32  # from the command line


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("embed_dimm: 64\n")
    assert main(["pretrain", "--config", str(path)]) == 2
    assert "embed_dimm" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_help_lists_every_field_with_its_doc(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(JEPAConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "Fraction of the tokens" in text and "--no-progress" in text and "--preset" in text


def test_bad_choice_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--masking", "diagonal"])
    assert exit_info.value.code == 2
    assert "diagonal" in capsys.readouterr().err


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "pretrain" in text and "demo" in text
