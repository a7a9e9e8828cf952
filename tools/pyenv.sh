#!/usr/bin/env bash
# Creates (or refreshes) the Python environment the bundle and ONNX tests use: .venv-test/ at the top of the
# source tree, with the pinned packages of tests/requirements.txt from PyPI. A stamp holding the requirements'
# checksum makes a second run free. Prints the environment's python on success.
# Usage: tools/pyenv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
req=tests/requirements.txt
sum=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.kelp-requirements" 2>/dev/null)" = "$sum" ]; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi
echo "kelp: preparing $venv from $req (pip)" >&2
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
echo "$sum" >"$venv/.kelp-requirements"
echo "$PWD/$venv/bin/python"
