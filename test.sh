#!/bin/sh
# Test a checkpoint and print the paper's two tables (reconstruction, denoising).
#   sh test.sh [CONFIG] [CHECKPOINT] [extra test.py arguments]
# Defaults: configs/CANS_Plus/Sony.yaml and pretrained_weights/CANS_Plus/Sony.pth
# (where the README puts the authors' published weights).
set -e
CONFIG=${1:-configs/CANS_Plus/Sony.yaml}
CHECKPOINT=${2:-pretrained_weights/CANS_Plus/Sony.pth}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
exec python "$(dirname "$0")/test.py" -c "$CONFIG" --checkpoint "$CHECKPOINT" "$@"
