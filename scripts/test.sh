#!/usr/bin/env bash
# Run the test suite: create .venv if needed, install the test dependencies,
# then run pytest on two workers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

for tool in jq node; do
    command -v "$tool" >/dev/null || echo "note: $tool is not installed; its reader tests are skipped" >&2
done

exec .venv/bin/python -m pytest -n 2 "$@"
