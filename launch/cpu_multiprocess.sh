#!/usr/bin/env bash
# Trains with several JAX processes on this machine, as a multi-host run would: each
# process drives DEVICES CPU devices, loads only its share of every batch and joins
# the others through jax.distributed (coordinator on 127.0.0.1, gloo collectives).
# The result equals one process with PROCESSES x DEVICES devices; use it to try a
# multi-host setup before a cluster.
#
#   PROCESSES=2 DEVICES=2 launch/cpu_multiprocess.sh configs/demo.py /tmp/stbln_mp
#
# Environment: PROCESSES (default 2), DEVICES per process (default 2), PORT of the
# coordinator (default 12355). Rerunning the same command resumes.
set -euo pipefail
config=${1:?usage: cpu_multiprocess.sh CONFIG WORKDIR [--config.field=value ...]}
workdir=${2:?usage: cpu_multiprocess.sh CONFIG WORKDIR [--config.field=value ...]}
shift 2
processes=${PROCESSES:-2}
export JAX_PLATFORMS=cpu
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES:-2}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < processes; i++)); do
  python -m stbln_jax.main --multihost --coordinator_address="127.0.0.1:${PORT:-12355}" \
    --num_processes="$processes" --process_id="$i" \
    --config="$config" --workdir="$workdir" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
