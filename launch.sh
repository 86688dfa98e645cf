#!/usr/bin/env bash
# dist_vpg's two commands:
#   ./launch.sh [key=value ...]   set up .venv if needed, then train over all local cores (torchrun);
#                                  --help lists every setting, --show-config prints the resolved one
#   ./launch.sh test [pytest args] set up .venv if needed, then run the test suite
#   ./launch.sh setup              set up .venv only (once, before a cluster job shares it)
# Environment: NPROC (ranks on this node, default: all cores), DIST_VPG_TORCH (the torch requirement,
# default torch==2.13.0, a CPU build; a bare "torch" may pull several GB of CUDA packages),
# PYTHON (the interpreter that makes the venv, default python3), VENV (default .venv),
# MAX_RESTARTS (torchrun --max-restarts, default 0; pair it with train.resume=auto), DRY_RUN=1
# (print the torchrun command instead of running it), DIST_VPG_MODULE (the module torchrun runs,
# default dist_vpg.train; benchmarks/bench_cluster.py runs its measurements through this path).
# Several nodes (docs/cluster.md): NNODES and NODE_RANK with MASTER_ADDR and
# MASTER_PORT (static rendezvous), or NNODES with RDZV_ENDPOINT=host:port (c10d rendezvous, any
# node order; RDZV_ID names the job). Under SLURM, NNODES, NODE_RANK and MASTER_ADDR come from
# SLURM's variables when unset. GLOO_SOCKET_IFNAME (the interface gloo uses) passes through.
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
        quiet_docs
        return
    fi
    echo "launch.sh: setting up $VENV ($TORCH_SPEC)" >&2
    [ -x "$PY" ] || "${PYTHON:-python3}" -m venv "$VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
    "$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
    echo "$want" > "$stamp"
    quiet_docs
}

quiet_docs() {  # mkdocs-material's ten-line end-of-life banner, off in the activated .venv
    grep -q NO_MKDOCS_2_WARNING "$VENV/bin/activate" 2>/dev/null ||
        echo 'export NO_MKDOCS_2_WARNING=1  # dist_vpg: no banner from mkdocs build and serve' >> "$VENV/bin/activate"
}

refuse() {  # one line, exit status 2: what every dist_vpg command does with bad input
    echo "launch.sh: $*" >&2
    exit 2
}

whole() {  # NAME VALUE MIN: VALUE is a whole number >= MIN (at most 6 digits: no bash overflow)
    [[ "$2" =~ ^[0-9]{1,6}$ ]] && [ "$2" -ge "$3" ] || refuse "$1=$2: must be a whole number >= $3"
}

setup
if [ "${1:-}" = "setup" ]; then
    exit 0
fi
if [ "${1:-}" = "test" ]; then
    shift
    exec "$PY" -m pytest "$@"
fi

if [ -n "${SLURM_JOB_ID:-}" ]; then
    NNODES=${NNODES:-${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}}
    NODE_RANK=${NODE_RANK:-${SLURM_NODEID:-0}}
    if [ -z "${MASTER_ADDR:-}" ] && [ -z "${RDZV_ENDPOINT:-}" ] && [ "$NNODES" -gt 1 ]; then
        # awk reads to the end: head would close the pipe early, and pipefail turn SIGPIPE into exit 141
        MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk "NR == 1")
    fi
fi
NNODES=${NNODES:-1}
NPROC=${NPROC:-$(nproc)}
whole NPROC "$NPROC" 1
whole NNODES "$NNODES" 1
whole MAX_RESTARTS "${MAX_RESTARTS:-0}" 0
[ -z "${MASTER_PORT:-}" ] || { whole MASTER_PORT "$MASTER_PORT" 1; [ "$MASTER_PORT" -le 65535 ] ||
    refuse "MASTER_PORT=$MASTER_PORT: must lie in 1..65535"; }
if [ -n "${NODE_RANK:-}" ]; then
    whole NODE_RANK "$NODE_RANK" 0
    [ "$NODE_RANK" -lt "$NNODES" ] || refuse "NODE_RANK=$NODE_RANK: must lie in 0..$((NNODES - 1)) (NNODES=$NNODES)"
fi
if [ -n "${RDZV_ENDPOINT:-}" ] && ! [[ "$RDZV_ENDPOINT" =~ ^[^:[:space:]]+:[0-9]{1,5}$ ]]; then
    refuse "RDZV_ENDPOINT=$RDZV_ENDPOINT: must be host:port"
fi
MODULE=${DIST_VPG_MODULE:-dist_vpg.train}
if [ "$MODULE" = dist_vpg.train ]; then
    for arg in "$@"; do  # help and the resolved configuration need no ranks
        case "$arg" in -h | --help | --show-config) exec "$PY" -m dist_vpg.train "$@" ;; esac
    done
    # The configuration, checked against the world torchrun will start, before it starts: a refusal
    # is the command's one line, not torchrun's report of failed ranks.
    "$PY" -m dist_vpg.train --preflight "$NPROC" "$((NPROC * NNODES))" "$@" || exit $?
fi
nodes=()
if [ -n "${RDZV_ENDPOINT:-}" ]; then
    nodes=(--nnodes "$NNODES" --rdzv-backend c10d --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-id "${RDZV_ID:-dist_vpg}")
elif [ "$NNODES" -gt 1 ]; then
    [ -n "${MASTER_ADDR:-}" ] || refuse "NNODES=$NNODES needs MASTER_ADDR (the address of node 0) or RDZV_ENDPOINT"
    [ -n "${NODE_RANK:-}" ] || refuse "NNODES=$NNODES needs NODE_RANK"
    nodes=(--nnodes "$NNODES" --node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port "${MASTER_PORT:-29500}")
else
    nodes=(--standalone)
fi
# torchrun shares its rendezvous store with the workers' process group by default; after a restart
# the new group can then read the dead group's addresses and fail or hang (pytorch issue 135712).
# Rank 0 hosting a store of its own for each attempt avoids that.
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}
# What torchrun sets for several ranks anyway (each rank then sets its own threads: cpu.threads),
# without the banner it prints when it does.
if [ "$NPROC" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    export OMP_NUM_THREADS=1
fi
cmd=("$VENV/bin/torchrun" "${nodes[@]}" --nproc_per_node "$NPROC" --max-restarts "${MAX_RESTARTS:-0}"
    -m "$MODULE" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    echo "${cmd[*]}"
    exit 0
fi
# Ranks' output passes through as it comes; torchrun's report of failed ranks is shown unless they
# all refused in one line (dist_vpg/torchrun_filter.py), and launch.sh then exits as they did, with 2.
[ -t 2 ] && export DIST_VPG_STDERR_TTY=1  # the progress bar: stderr reaches a terminal through the reader
verdict=$(mktemp)
trap 'rm -f "$verdict"' EXIT
# stderr alone through the reader (fd 3 keeps stdout); the pipeline's first status is torchrun's
set +e
{ "${cmd[@]}" 2>&1 1>&3 3>&- | "$PY" -m dist_vpg.torchrun_filter "$verdict" 3>&-; } 3>&1
status=${PIPESTATUS[0]}
set -e
if [ -s "$verdict" ]; then
    exit 2
fi
exit "$status"
