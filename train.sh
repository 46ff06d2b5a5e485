#!/bin/sh
# Train CANS / CANS++.
#   sh train.sh [CONFIG] [extra train.py arguments]      e.g. sh train.sh configs/demo.yaml --set train.epochs=2
#   NPROC=4 sh train.sh configs/CANS_Plus/Sony.yaml      # 4 GPUs with DistributedDataParallel (torchrun)
# Default config: configs/CANS_Plus/Sony.yaml (the paper's recipe on SID Sony).
set -e
CONFIG=${1:-configs/CANS_Plus/Sony.yaml}
[ $# -gt 0 ] && shift
HERE=$(dirname "$0")
NPROC=${NPROC:-1}
if [ "$NPROC" -gt 1 ]; then
    exec torchrun --standalone --nproc_per_node "$NPROC" "$HERE/train.py" -c "$CONFIG" "$@"
fi
exec python "$HERE/train.py" -c "$CONFIG" "$@"
