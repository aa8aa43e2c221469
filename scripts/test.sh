#!/usr/bin/env bash
# Set everything up, then run every test: lint, types, unit and doctests,
# real worker processes, the real DuckDB file, the HTTP server on loopback,
# the notebooks (nbval), the browser test and the strict docs-site build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
.venv/bin/python -m ruff check fuseline_nb tests benchmarks
.venv/bin/python -m mypy
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
.venv/bin/python -m pytest tests fuseline_nb --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg notebooks "$@"
