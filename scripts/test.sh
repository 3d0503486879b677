#!/usr/bin/env bash
# The README's test command: install (CPU torch first, so pip never pulls a CUDA build), lint, check the
# import layers of DESIGN.md, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet torch==2.13.0 -e ".[dev,pusht]"
python -m ruff check .
lint-imports
python -m pytest -q "$@"
