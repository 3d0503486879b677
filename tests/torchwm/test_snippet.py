"""The documented entry point runs exactly as written (tiny preset, one epoch, generated images)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torchwm.wm.checkpoint import latest_checkpoint


def test_documented_snippet_runs(image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the snippet uses ./data
    assert Path("data/train").is_dir()
    from torchwm import JEPAAgent, JEPAConfig

    cfg = JEPAConfig.preset("tiny", batch_size=4, progress=False, output_dir="runs/snippet")
    cfg.dataset = "imagefolder"
    cfg.root_path = "./data"
    cfg.image_folder = "train"
    cfg.epochs = 1
    summary = JEPAAgent(cfg).train()
    assert summary.steps == 12 // 4
    assert latest_checkpoint("runs/snippet") is not None
    assert os.path.isfile("runs/snippet/log.csv")


def test_defaults_match_the_spec() -> None:
    from torchwm import JEPAConfig

    cfg = JEPAConfig()
    assert (cfg.image_size, cfg.patch_size, cfg.embed_dim, cfg.num_layers, cfg.num_heads) == (224, 16, 768, 12, 12)
    assert (cfg.mask_ratio, cfg.predict_horizon, cfg.batch_size, cfg.learning_rate) == (0.75, 1, 64, 1e-4)


def test_attribute_set_after_construction_is_validated(tmp_path: Path) -> None:
    from torchwm import JEPAAgent, JEPAConfig

    cfg = JEPAConfig.preset("tiny", output_dir=str(tmp_path))
    agent = JEPAAgent(cfg)
    cfg.masking = "diagonal"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="masking='diagonal'.*'block', 'random', 'temporal'"):
        agent.train()
