#!/usr/bin/env bash
# dist_vpg's two commands:
#   ./launch.sh [key=value ...]   set up .venv if needed, then train over all local cores (torchrun)
#   ./launch.sh test [pytest args] set up .venv if needed, then run the test suite
# Environment: NPROC (ranks on this node, default: all cores), DIST_VPG_TORCH (the torch requirement,
# default torch==2.13.0, a CPU build; a bare "torch" may pull several GB of CUDA packages),
# PYTHON (the interpreter that makes the venv, default python3), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")"

TORCH_SPEC=${DIST_VPG_TORCH:-torch==2.13.0}
VENV=${VENV:-.venv}
PY=$VENV/bin/python

setup() {
    local stamp="$VENV/.dist_vpg-installed"
    local want
    want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $TORCH_SPEC"
    if [ -x "$PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    echo "launch.sh: setting up $VENV ($TORCH_SPEC)" >&2
    [ -x "$PY" ] || "${PYTHON:-python3}" -m venv "$VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
    "$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
    echo "$want" > "$stamp"
}

setup
if [ "${1:-}" = "test" ]; then
    shift
    exec "$PY" -m pytest "$@"
fi

NPROC=${NPROC:-$(nproc)}
exec "$VENV/bin/torchrun" --standalone --nproc_per_node "$NPROC" -m dist_vpg.train "$@"
