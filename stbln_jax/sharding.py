"""The ('data',) mesh and the two shardings the steps use.

Parameters, BatchNorm statistics and optimizer state are replicated; a batch is one
global array sharded along its first axis, assembled from the rows each process
loads. Under `jax.jit`, means over the batch axis (the loss, BatchNorm statistics)
are then means over the global batch, whatever the device count.
"""

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np


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
