#!/usr/bin/env bash
# The README's test command: install (CPU torch first, so pip never pulls a CUDA build), lint, type-check,
# check the import layers of DESIGN.md, build the documentation with warnings as errors, run the tests and the
# docstring examples.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet torch==2.13.0 -e ".[dev,pusht,bench,plots]"
python -m ruff check .
./scripts/check_package.sh
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet --site-dir build/site
python -m pytest -q "$@"
