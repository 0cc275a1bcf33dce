#!/usr/bin/env bash
# Multi-process test on one machine: bash tools/dist_test.sh CONFIG NUM_PROCS [tools/test.py args]
# (targets are split across processes; metrics are gathered on rank 0).
#
# torchrun gives each process one CPU thread; the transductive fit (rank 0, while the others
# wait) runs with the thread count a one-process run would use (MEDPERSAM_FIT_THREADS), so its
# floating point, hence the report, is the same as with one process.
set -euo pipefail
usage() {
  cat <<'USAGE'
Usage: bash tools/dist_test.sh CONFIG NUM_PROCS [tools/test.py arguments, e.g. CHECKPOINT --out-metrics m.json]

Runs tools/test.py in NUM_PROCS processes on this machine (torchrun; gloo without a GPU): targets
are split across processes, metrics gathered on rank 0; exit codes are tools/test.py's.
Environment: PYTHON (default: the project's .venv/bin/python), PORT (29500), NNODES (1),
NODE_RANK (0), MASTER_ADDR (127.0.0.1), MEDPERSAM_FIT_THREADS (a one-process run's thread count).
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: tools/dist_test.sh needs CONFIG and NUM_PROCS (a whole number >= 1)" >&2
  usage >&2
  exit 4
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
PY=${PYTHON:-"$HERE/../.venv/bin/python"}
[ -x "$PY" ] || PY=python3
CONFIG=$1
PROCS=$2
shift 2
export MEDPERSAM_FIT_THREADS=${MEDPERSAM_FIT_THREADS:-$("$PY" -c 'import torch; print(torch.get_num_threads())')}
PYTHONPATH="$HERE/..":${PYTHONPATH:-} \
"$PY" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$PROCS" \
    "$HERE/test.py" "$CONFIG" --launcher pytorch "$@"
