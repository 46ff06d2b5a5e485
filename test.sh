#!/bin/sh
# Test a checkpoint and print the paper's two tables (reconstruction, denoising).
#   sh test.sh [CONFIG] [CHECKPOINT] [extra test.py arguments]
# Defaults: configs/CANS_Plus/Sony.yaml and the config's test.checkpoint, else
# pretrained_weights/<model.type>/<camera>.pth (where the README puts the authors' published
# weights: pretrained_weights/CANS_Plus/Sony.pth for the default config).
# An argument starting with '-' ends the positional ones: sh test.sh configs/CANS/Sony.yaml --compare-paper
set -e
CONFIG=configs/CANS_Plus/Sony.yaml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    CONFIG=$1
    shift
fi
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    CHECKPOINT=$1
    shift
    exec python "$(dirname "$0")/test.py" -c "$CONFIG" --checkpoint "$CHECKPOINT" "$@"
fi
exec python "$(dirname "$0")/test.py" -c "$CONFIG" "$@"
