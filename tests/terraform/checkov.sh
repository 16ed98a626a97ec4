#!/bin/sh
# Run checkov from its own venv (.venv-checkov), creating it first if missing.
# checkov vendors a fork of python-hcl2 under the same import name, so it must never share the
# project's .venv (docs/dev/contracts.md). Usage (from anywhere):
#   tests/terraform/checkov.sh -d terraform --framework terraform --skip-download
# CHECKOV_VENV overrides the venv location; CHECKOV_REQUIREMENT the pip requirement.
set -eu
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CHECKOV_VENV:-$repo/.venv-checkov}"
requirement="${CHECKOV_REQUIREMENT:-checkov>=3.2,<4}"

if [ ! -x "$venv/bin/checkov" ]; then
  echo "checkov.sh: creating $venv ($requirement)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$requirement" >&2
fi

if [ "$#" -eq 0 ]; then
  set -- -d "$repo/terraform" --framework terraform --skip-download
fi
exec "$venv/bin/checkov" "$@"
