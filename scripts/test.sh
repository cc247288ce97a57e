#!/usr/bin/env bash
# The test command (run as root). With no arguments: install, lint (ruff, mypy), run the unit tests
# cut off from any Docker engine and Elasticsearch (they must not need them), bring the
# test bed up, run the integration and scenario tests, bring the bed down; exit non-zero
# if any stage failed.
#
# With arguments, they go to pytest: `scripts/test.sh tests/unit -x` runs only unit tests
# and needs no bed; anything else brings the bed up around that pytest run.
# SHIPPER_KEEP_BED=1 leaves the bed running.
set -uo pipefail
cd "$(dirname "$0")/.."

stage() { # name command...
    local name=$1 start=$SECONDS rc; shift
    printf '[stage] %s ...\n' "$name"
    "$@"; rc=$?
    printf '[stage] %s: %ds, exit %d\n' "$name" $((SECONDS - start)) "$rc"
    return "$rc"
}

# Unit tests with no way to the bed: no Docker socket, and (where unshare works) a
# network namespace of their own with only loopback, so nothing on the host answers.
unit_isolated() { # pytest args...
    local pytest=(env DOCKER_HOST=unix:///nonexistent/docker.sock ES_URL=http://127.0.0.1:1
                  .venv/bin/python -m pytest -p no:cacheprovider -n auto "$@")
    if unshare -n true 2>/dev/null; then
        unshare -n sh -c 'ip link set lo up 2>/dev/null; exec "$@"' sh "${pytest[@]}"
    else
        "${pytest[@]}"
    fi
}

only_unit=0
for arg in "$@"; do
    if [[ $arg == tests/unit* ]]; then
        ((only_unit == -1)) || only_unit=1
    elif [[ $arg != -* ]]; then
        only_unit=-1
    fi
done

stage install scripts/install.sh || exit 1
if ((only_unit == 1)); then
    stage unit unit_isolated "$@"
    exit
fi
if (($# == 0)); then
    stage lint scripts/lint.sh; lint=$?
    stage unit unit_isolated tests/unit; unit=$?
    set -- tests/integration tests/scenarios
else
    lint=0 unit=0
fi
if ! stage testbed-up scripts/testbed.sh up; then
    scripts/testbed.sh down
    exit 1
fi
scripts/testbed.sh status
stage tests .venv/bin/python -m pytest "$@"
rc=$?
[[ ${SHIPPER_KEEP_BED:-} == 1 ]] || stage testbed-down scripts/testbed.sh down
((rc == 0 && lint == 0 && unit == 0))
