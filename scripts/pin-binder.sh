#!/usr/bin/env bash
# Regenerate binder/requirements.txt: install the project with its notebook extra
# into a fresh virtual environment (as Binder's postBuild does) and pin what it got.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check ".[notebook]"
{
  echo "# Pinned versions for Binder (repo2docker installs these, then postBuild installs"
  echo "# fuseline_nb with its notebook extra). Regenerate with: bash scripts/pin-binder.sh"
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -vi '^fuseline'
} > binder/requirements.txt
echo "pin-binder: wrote binder/requirements.txt ($(grep -vc '^#' binder/requirements.txt) packages)"
