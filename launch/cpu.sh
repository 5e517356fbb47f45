#!/usr/bin/env bash
# Trains on this machine's CPU cores: one process, glibc told to keep freed memory.
#
#   launch/cpu.sh configs/demo.py /tmp/stbln_demo
#   launch/cpu.sh configs/cv.py runs/cv --config.data_dir=/data/tfds
#
# XLA's CPU backend allocates each step's temporaries (gigabytes for a T=300 training
# step) as one block and frees it at the end of the step; by default glibc hands such
# blocks back to the OS and every step page-faults them in again. One heap, no mmap for
# large blocks and no trimming keep them in the process instead; the process then
# holds its peak memory. Set GLIBC_TUNABLES yourself to override.
# Rerunning the same command resumes from the last checkpoint in the workdir.
set -euo pipefail
config=${1:?usage: cpu.sh CONFIG WORKDIR [--config.field=value ...]}
workdir=${2:?usage: cpu.sh CONFIG WORKDIR [--config.field=value ...]}
shift 2
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615}
exec python -m stbln_jax.main --config="$config" --workdir="$workdir" "$@"
