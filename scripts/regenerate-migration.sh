#!/usr/bin/env bash
# Until the first release the schema is one migration: regenerate it from the models.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/*.py
BTCW_VAR_DIR="$tmp" .venv/bin/flask --app app db migrate -m "initial schema" >/dev/null
rm -rf "$tmp"
ls migrations/versions
