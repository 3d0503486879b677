#!/usr/bin/env bash
# The README's test command: install (CPU torch first, so pip never pulls a CUDA build), lint, type-check,
# check the import layers of DESIGN.md, run the tests and the docstring examples.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet torch==2.13.0 -e ".[dev,pusht,bench]"
python -m ruff check .
./scripts/check_package.sh
python -m pytest -q "$@"
