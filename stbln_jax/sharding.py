"""The ('data',) mesh and the two shardings the steps use.

Parameters, BatchNorm statistics and optimizer state are replicated; a batch is one
global array sharded along its first axis, assembled from the rows each process
loads. Under `jax.jit`, means over the batch axis (the loss, BatchNorm statistics)
are then means over the global batch, whatever the device count.

`initialize_distributed` joins the processes of a multi-process run (`--multihost`).
"""

import os

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or value == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'environment variable {name}={value!r} is not an integer') from None


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """`jax.distributed.initialize` with CPU collectives enabled; before any JAX work.

  Unset arguments come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID, and those still unset from the cluster JAX detects (SLURM, Cloud
  TPU, Open MPI, Kubernetes).
  """
  coordinator_address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if num_processes is None:
    num_processes = _env_int('JAX_NUM_PROCESSES')
  if process_id is None:
    process_id = _env_int('JAX_PROCESS_ID')
  if num_processes is not None and num_processes < 1:
    raise ValueError(f'num_processes={num_processes} must be positive')
  if process_id is not None and num_processes is not None and not (
      0 <= process_id < num_processes):
    raise ValueError(f'process_id={process_id} must be in [0, {num_processes})')
  # Cross-process collectives of the CPU backend (gloo over TCP); the GPU and TPU
  # backends have their own and ignore this.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D ('data',) mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: only the step's inputs and outputs are pinned; XLA places the rest.
  return jax.make_mesh((len(devices),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def to_global(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Global arrays from this process's part of a batch (split along axis 0)."""
  sharding = batch_sharded(mesh)
  num_processes = jax.process_count()

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
        sharding, x, (x.shape[0] * num_processes,) + x.shape[1:])
  return jax.tree.map(put, batch)
