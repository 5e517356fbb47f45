"""The initializers of the network's maps: He's for the lean layers, PyTorch's for the
released ones (so a released network starts as the authors' code starts it)."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def kaiming_fan_out() -> Callable:
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def he_normal(fan_out: int) -> Callable:
  """PyTorch's kaiming_normal_(mode='fan_out') for a conv with that fan-out."""
  return nn.initializers.normal(float(np.sqrt(2.0 / fan_out)))


def torch_uniform(fan_in: int) -> Callable:
  """PyTorch's default Conv2d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                   bound)
