#!/usr/bin/env bash
# The test command (run as root): install, bring the test bed up, run every test,
# bring the bed down, exit with pytest's status. Extra arguments go to pytest,
# e.g. `scripts/test.sh tests/unit -x`. SHIPPER_KEEP_BED=1 leaves the bed running.
set -uo pipefail
cd "$(dirname "$0")/.."

stage() { # name command...
    local name=$1 start=$SECONDS rc; shift
    printf '[stage] %s ...\n' "$name"
    "$@"; rc=$?
    printf '[stage] %s: %ds, exit %d\n' "$name" $((SECONDS - start)) "$rc"
    return "$rc"
}

stage install scripts/install.sh || exit 1
if ! stage testbed-up scripts/testbed.sh up; then
    scripts/testbed.sh down
    exit 1
fi
scripts/testbed.sh status
stage tests .venv/bin/python -m pytest "$@"
rc=$?
[[ ${SHIPPER_KEEP_BED:-} == 1 ]] || stage testbed-down scripts/testbed.sh down
exit "$rc"
