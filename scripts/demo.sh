#!/usr/bin/env bash
# Run the main job on the bundled example releases: create .venv if needed,
# install the runtime dependencies, then run scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt

exec .venv/bin/python scripts/demo.py "$@"
