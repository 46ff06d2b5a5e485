#!/bin/sh
# Train CANS / CANS++.
#   sh train.sh [CONFIG] [extra train.py arguments]      e.g. sh train.sh configs/demo.yaml --set train.epochs=2
#   NPROC=4 sh train.sh configs/CANS_Plus/Sony.yaml      # 4 GPUs with DistributedDataParallel (torchrun)
# Default config: configs/CANS_Plus/Sony.yaml (the paper's recipe on SID Sony); an argument
# starting with '-' is passed on, not taken as the config: sh train.sh --set train.base_lr=1e-4
set -e
CONFIG=configs/CANS_Plus/Sony.yaml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    CONFIG=$1
    shift
fi
HERE=$(dirname "$0")
NPROC=${NPROC:-1}
if [ "$NPROC" -gt 1 ]; then
    exec torchrun --standalone --nproc_per_node "$NPROC" "$HERE/train.py" -c "$CONFIG" "$@"
fi
exec python "$HERE/train.py" -c "$CONFIG" "$@"
