#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check nirbridge tests bench deploy scripts
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose (exit 5 must not pass silently)" >&2
    exit 1
fi
exit "$rc"
