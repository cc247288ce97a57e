#!/usr/bin/env bash
# Install the shipper and its test tools into a virtualenv (.venv, or $SHIPPER_VENV).
# Idempotent: a second run only checks. System services (dockerd, Elasticsearch)
# are the test bed's business: scripts/testbed.sh installs what they need.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SHIPPER_VENV:-.venv}
PYTHON=${PYTHON:-python3}

say() { printf '[install] %s\n' "$*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { say "ERROR: Python >= 3.11 needed, $PYTHON is $("$PYTHON" --version 2>&1)"; exit 1; }
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    say "installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
fi
[[ -x $VENV/bin/python ]] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q -e '.[test]' >&2
say "shipper $("$VENV/bin/shipper" --version | cut -d' ' -f2) installed in $VENV"
