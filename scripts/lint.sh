#!/usr/bin/env bash
# Lint and type-check the project as CI does: ruff over everything, mypy over the package
# (strict for model, config, errors, sinks and delivery; see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check shipper tests bench scripts
.venv/bin/mypy
