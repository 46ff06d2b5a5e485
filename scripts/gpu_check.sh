#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py, cans/tools/gpu_check.py): bash scripts/gpu_check.sh OUTDIR, run by
# $PYTHON or else the first of python, python3 that imports torch (a bare `python` may be another interpreter).
# Without options it runs part 1, made to fit one command of 600 s (it ends by its 540-s deadline);
# python scripts/gpu_check.py --plan lists the parts.
if [ $# -lt 1 ]; then echo "usage: bash scripts/gpu_check.sh OUTDIR" >&2; exit 2; fi
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    PY=python3
    for c in python python3; do
        if command -v "$c" > /dev/null 2>&1 && "$c" -c "import torch" > /dev/null 2>&1; then PY=$c; break; fi
    done
fi
exec "$PY" "$(dirname "$0")/gpu_check.py" "$@"
