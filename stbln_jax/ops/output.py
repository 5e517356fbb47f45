"""A layer's output ReLU, computed once into memory where that pays (XLA's CPU backend)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from stbln_jax.ops import temporal

Array = jax.Array


def materialize_outputs() -> bool:
  """Whether `layer_output` computes into memory: on CPU, except with XLA's convolution.

  The 'xla' path is the one FLOPs are counted from, and the conditional would add its
  comparisons to them.
  """
  return jax.default_backend() == 'cpu' and temporal.current_temporal_conv() != 'xla'


def layer_output(y: Array) -> Array:
  """ReLU(y) for a layer's output, computed once into memory (`materialize_outputs`).

  A layer's output feeds the next layer's mixer and its residual path. XLA's CPU backend
  fuses the elementwise BN + residual + ReLU chain into both consumers, and with identity
  residuals the chain reaches back through every earlier layer of the stage (BENCHMARKS.md,
  attempt 9). A conditional whose predicate is known only at run time is a fusion
  boundary XLA cannot remove; both branches compute the same ReLU.
  """
  if not materialize_outputs():
    return nn.relu(y)
  first = jax.lax.index_in_dim(y.reshape(-1), 0, keepdims=False)
  return jax.lax.cond(first > 0, nn.relu, lambda a: jnp.where(a > 0, a, 0).astype(a.dtype), y)
