"""Safe loading: a checkpoint whose files are not what they claim fails with an error naming the file (and the
field), and neither `JEPAAgent.from_pretrained` nor `WorldModel.from_pretrained` ever unpickles code, wherever it is planted.

(tests/wm/test_trainer.py already covers a malicious trainer_state.pt on resume and tampered tensor shapes.)
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torchwm.wm.checkpoint import CONFIG_FILE, STATE_FILE, WEIGHTS_FILE
from torchwm.wm.config import JEPAConfig
from torchwm.wm.jepa import JEPA
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.world_model import WorldModel, WorldModelSpec


def tiny_jepa_config() -> JEPAConfig:
    return JEPAConfig.preset(
        "tiny", image_size=32, embed_dim=32, num_layers=1, num_heads=4, predictor_dim=32, predictor_depth=1,
        predictor_heads=4, num_frames=2, tubelet_size=1,
    )  # fmt: skip


def jepa_checkpoint(path: Path) -> Path:
    return JEPA(tiny_jepa_config()).save_pretrained(path, {"step": 1, "optimizer": {}})


def world_model_checkpoint(path: Path) -> Path:
    cfg = tiny_jepa_config()
    spec = WorldModelSpec(action_dim=2, latent_dim=8, width=16, depth=1, heads=2, max_steps=8)
    return WorldModel(cfg, spec).save_pretrained(path, {"step": 1, "optimizer": {}})


Loader = Callable[[Path], Any]
LOADERS: dict[str, tuple[Callable[[Path], Path], Loader]] = {
    "jepa": (jepa_checkpoint, JEPAAgent.from_pretrained),
    "world_model": (world_model_checkpoint, WorldModel.from_pretrained),
}


@pytest.fixture(scope="module", params=sorted(LOADERS))
def good(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Loader]:
    """A valid checkpoint of each kind and its loader (copied before each test changes it)."""
    make, load = LOADERS[request.param]
    ckpt = make(tmp_path_factory.mktemp(request.param) / "step_00000001")
    load(ckpt)  # loads as written
    return ckpt, load


@pytest.fixture
def ckpt(good: tuple[Path, Loader], tmp_path: Path) -> Path:
    return Path(shutil.copytree(good[0], tmp_path / "step_00000001"))


@pytest.fixture
def load(good: tuple[Path, Loader]) -> Loader:
    return good[1]


class Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_the_planted_payload_is_live(tmp_path: Path) -> None:
    pickle.loads(pickle.dumps(Exploit(tmp_path / "ran")))  # what an unsafe loader would do
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("where", ["trainer_state", "weights_as_pickle", "weights_as_torch_save"])
def test_no_loader_ever_unpickles_code(ckpt: Path, load: Loader, tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    if where == "trainer_state":
        torch.save({"optimizer": Exploit(marker), "step": 1}, ckpt / STATE_FILE)
        load(ckpt)  # the trainer state is not needed to load a model, so it is not read at all
    else:
        payload = {"encoder.patch_embed.proj.weight": Exploit(marker)}
        if where == "weights_as_pickle":
            (ckpt / WEIGHTS_FILE).write_bytes(pickle.dumps(payload))
        else:
            torch.save(payload, ckpt / WEIGHTS_FILE)
        with pytest.raises(ValueError, match=f"{WEIGHTS_FILE} is not a readable safetensors file"):
            load(ckpt)
    assert not marker.exists()


def edit_config(ckpt: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads((ckpt / CONFIG_FILE).read_text())
    change(data)
    (ckpt / CONFIG_FILE).write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda c: (c / CONFIG_FILE).write_text("{not json"), "config.json is not valid JSON"),
        (lambda c: (c / CONFIG_FILE).write_bytes(b"\xff\xfe\x00garbage"), "config.json is not valid JSON"),
        (lambda c: (c / CONFIG_FILE).write_text("[1, 2, 3]"), "config.json must hold a JSON object, got list"),
        (lambda c: edit_config(c, lambda d: d.update(format_version=99)), "config.json has format_version 99"),
        (lambda c: edit_config(c, lambda d: d.pop("format_version")), "config.json has format_version None"),
        (lambda c: edit_config(c, lambda d: d["jepa"].update(bogus=1)), r"config.json.*unknown field.*'bogus'"),
        (lambda c: edit_config(c, lambda d: d["jepa"].update(embed_dim="wide")), r"config.json.*embed_dim='wide'"),
        (lambda c: (c / WEIGHTS_FILE).write_bytes(b""), "model.safetensors is not a readable safetensors file"),
        (lambda c: (c / WEIGHTS_FILE).write_bytes(os.urandom(64)), "model.safetensors is not a readable"),
    ],
    ids=["garbage", "not-utf8", "json-list", "format-version", "no-format-version", "unknown-field", "bad-value",
         "empty-weights", "random-weights"],
)  # fmt: skip
def test_a_damaged_checkpoint_names_the_file_and_field(
    ckpt: Path, load: Loader, damage: Callable[[Path], None], match: str
) -> None:
    damage(ckpt)
    with pytest.raises(ValueError, match=match) as err:
        load(ckpt)
    assert str(ckpt) in str(err.value)


def test_a_world_model_spec_with_an_unknown_field_names_it(tmp_path: Path) -> None:
    ckpt = world_model_checkpoint(tmp_path / "step_00000001")
    edit_config(ckpt, lambda d: d["spec"].update(bogus=1))
    with pytest.raises(ValueError, match=r"config.json does not describe a world model.*'bogus'"):
        WorldModel.from_pretrained(ckpt)
    edit_config(ckpt, lambda d: d.pop("spec"))
    with pytest.raises(ValueError, match=r"config.json does not describe a world model.*'spec'"):
        WorldModel.from_pretrained(ckpt)
