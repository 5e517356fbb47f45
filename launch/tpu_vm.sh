#!/usr/bin/env bash
# Trains on a Cloud TPU VM or a multi-host TPU slice: the same command runs on every
# worker (one process per host). --multihost reads the TPU metadata: the coordinator
# is worker 0 (port 8482), the process count the number of workers and the process id
# the worker's index; the --coordinator_address, --num_processes and --process_id
# flags (or JAX_* variables) are not needed.
#
#   launch/tpu_vm.sh my-tpu us-central2-b configs/cv.py /mnt/shared/runs/cv
#
# Environment:
#   REPO  the repository's path on the workers (default ~/stbln_jax), installed there
#         with `pip install -e '.[tpu]'`
# Every worker needs the built dataset and the workdir at the same paths; use a shared
# mount for the workdir (Filestore/NFS or a gcsfuse mount): checkpoints are written by
# all hosts together. The global batch must be a multiple of the number of TPU chips.
set -euo pipefail
tpu=${1:?usage: tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides]}
zone=${2:?usage: tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides]}
config=${3:?usage: tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides]}
workdir=${4:?usage: tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides]}
shift 4
repo=${REPO:-'$HOME/stbln_jax'}  # expanded on the workers
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  cd $repo && python -m stbln_jax.main --multihost --config=$config --workdir=$workdir $*"
