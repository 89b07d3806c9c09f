#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite: lint, types, unit, namespace and interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"
exec pytest -q "$@"
