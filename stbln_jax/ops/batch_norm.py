"""BatchNorm over the last axis with a hand-written gradient (same variables as flax's)."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

MOMENTUM = 0.9  # PyTorch's 0.1
EPSILON = 1e-5


def _bn_statistics(x: Array) -> tuple[Array, Array]:
  """Per-channel mean and (biased) variance over all axes but the last, in float32."""
  x = x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  # E[x²] - E[x]², clipped at 0, as flax's BatchNorm computes it.
  var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train(x: Array, scale: Array, bias: Array, eps: float):
  """Training-mode BN over the last axis: (normalised x · scale + bias, mean, var)."""
  return _bn_train_fwd(x, scale, bias, eps)[0]


def _bn_train_fwd(x, scale, bias, eps):
  mean, var = _bn_statistics(x)
  inv = jax.lax.rsqrt(var + eps)
  y = (x.astype(jnp.float32) - mean) * (scale * inv) + bias
  # Only the input (in its own dtype) and per-channel vectors are kept for the
  # backward pass, which recomputes the normalised input from them.
  return (y.astype(x.dtype), mean, var), (x, mean, inv, scale)


def _bn_train_bwd(eps, residuals, cotangents):
  del eps
  x, mean, inv, scale = residuals
  dy, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  centred = x.astype(jnp.float32) - mean
  x_hat = centred * inv
  g = dy.astype(jnp.float32)
  dbias = jnp.sum(g, axes)
  dscale = jnp.sum(g * x_hat, axes)
  # d/dx of mean and of the biased variance, for whatever uses the batch statistics.
  dx = (scale * inv) * (g - (dbias + x_hat * dscale) / count)
  dx = dx + (dmean + 2.0 * dvar * centred) / count
  return dx.astype(x.dtype), dscale, dbias


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BatchNorm(nn.Module):
  """BatchNorm over the last axis, with a hand-written gradient.

  The same computation and variables as `flax.linen.BatchNorm(axis=-1)` (params
  'scale' and 'bias', batch_stats 'mean' and 'var', float32 statistics and parameters,
  the output in `dtype`). Its gradient keeps only the input, in the dtype it comes in,
  where flax's keeps two float32 arrays of the input's size (BENCHMARKS.md, attempt 15).
  """
  use_running_average: bool
  dtype: Dtype = jnp.float32
  scale_init_value: float = 1.0
  momentum: float = MOMENTUM
  epsilon: float = EPSILON

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.constant(self.scale_init_value), (c,),
                       jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    x = x.astype(self.dtype)
    if self.use_running_average:
      mul = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
      y = (x.astype(jnp.float32) - ra_mean.value) * mul + bias
      return y.astype(self.dtype)
    y, mean, var = _bn_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y
