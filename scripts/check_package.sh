#!/usr/bin/env bash
# Static checks of the package as a wheel lays it out: the type checker (mypy) and the import-layer
# contracts of DESIGN.md (import-linter), both configured in pyproject.toml.
# Both tools find a package's modules by walking its folder, and torchwm's subpackages live in the
# repository's top-level folders (wm/ is torchwm.wm, envs/ torchwm.envs, agents/ torchwm.agents), so
# they run on a copy arranged as site-packages holds it (build/wheel-layout, remade on every run).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
staging="$repo/build/wheel-layout"
rm -rf "$staging"
mkdir -p "$staging/torchwm"
cp -r torchwm/. "$staging/torchwm"
for sub in wm envs agents; do cp -r "$sub" "$staging/torchwm/$sub"; done
find "$staging" -name __pycache__ -prune -exec rm -rf {} +
cd "$staging"
PYTHONPATH="$staging" python -m mypy --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache"
PYTHONPATH="$staging" lint-imports --config "$repo/pyproject.toml"
