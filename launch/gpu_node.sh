#!/usr/bin/env bash
# Trains on all GPUs of one machine: one process, the global batch split evenly over
# the GPUs (config.batch_size must be a multiple of their number).
#
#   launch/gpu_node.sh configs/cv.py /runs/cv_bilinear --config.model.aggregate_at=6
#
# Environment:
#   CUDA_VISIBLE_DEVICES  the GPUs to use (default: all)
#   WORKERS               grain worker processes decoding batches (default 4; 0 = threads
#                         of the training process); raise it if the GPUs wait for data
# Needs `pip install -e '.[cuda]'` and the dataset built (python -m data_prep.build).
# Rerunning the same command resumes from the last checkpoint in the workdir.
set -euo pipefail
config=${1:?usage: gpu_node.sh CONFIG WORKDIR [--config.field=value ...]}
workdir=${2:?usage: gpu_node.sh CONFIG WORKDIR [--config.field=value ...]}
shift 2
exec python -m stbln_jax.main --config="$config" --workdir="$workdir" \
  --config.worker_count="${WORKERS:-4}" "$@"
