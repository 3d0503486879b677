"""One import package: the wheel holds only ``torchwm``; nothing a user's project calls ``envs``, ``agents`` or
``wm`` can shadow it; the public face holds what the README promises; docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _package_modules() -> list[str]:
    """Every module of the installed package, by its real dotted name."""
    import torchwm

    names = ["torchwm"]
    for pkg in ("torchwm", "torchwm.wm", "torchwm.envs", "torchwm.agents"):
        module = importlib.import_module(pkg)
        names += [info.name for info in pkgutil.iter_modules(module.__path__, prefix=pkg + ".")]
    assert torchwm.__name__ == "torchwm"
    return sorted(set(names) - {"torchwm.__main__"})


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("torchwm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"torchwm"}
    for sub in ("wm/world_model.py", "envs/latent.py", "agents/planners.py", "cli.py"):
        assert f"torchwm/{sub}" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "torchwm = torchwm.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_unrelated_envs_and_agents_packages_do_not_shadow_torchwm(tmp_path: Path) -> None:
    for name in ("envs", "agents", "wm"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"MINE = {name!r}\n")
    script = (
        "import envs, agents, wm\n"  # the user's own packages, first on sys.path (the working directory)
        "assert (envs.MINE, agents.MINE, wm.MINE) == ('envs', 'agents', 'wm')\n"
        "import gymnasium as gym, torchwm\n"
        "from torchwm.envs.two_rooms import TwoRoomsEnv\n"
        "env = gym.make('torchwm/TwoRooms-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "assert isinstance(env.unwrapped, TwoRoomsEnv) and obs.shape == (64, 64, 3)\n"
        "assert gym.make('torchwm/PointMass-v0').reset(seed=0)[0].dtype.name == 'uint8'\n"
        "assert envs.MINE == 'envs'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_torchwm_loads_neither_torch_nor_stable_baselines3() -> None:
    script = (
        "import sys, torchwm\n"
        "heavy = sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_the_curated_list_and_all_resolve() -> None:
    import torchwm

    assert torchwm.__all__ == sorted(torchwm._PUBLIC)
    for name in torchwm.__all__:
        value = getattr(torchwm, name)
        assert value.__name__ == name, name
    for internal in ("split_held_out", "labelled_dataset", "greedy_one_step", "PRESETS"):
        assert internal not in torchwm.__all__
    with pytest.raises(AttributeError, match="torchwm.__all__"):
        _ = torchwm.split_held_out


def test_every_name_the_readme_imports_from_torchwm_imports() -> None:
    readme = (REPO / "README.md").read_text()
    statements = re.findall(r"^\s*(from torchwm(?:\.[\w.]+)? import [\w, ]+)$", readme, flags=re.M)
    assert statements, "the README shows no `from torchwm import ...`"
    for statement in statements:
        exec(statement, {})  # the README's own words


def test_the_subpackages_are_reached_through_torchwm_only() -> None:
    import torchwm.agents
    import torchwm.envs
    import torchwm.wm

    for pkg, folder in ((torchwm.wm, "wm"), (torchwm.envs, "envs"), (torchwm.agents, "agents")):
        assert Path(pkg.__file__).resolve().parent == REPO / folder or "site-packages" in pkg.__file__
    assert "wm" not in sys.modules and "envs" not in sys.modules and "agents" not in sys.modules


@pytest.mark.parametrize("module_name", _package_modules())
def test_docstring_examples_run(module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {module_name} failed"
