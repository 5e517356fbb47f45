"""Kernels behind the network: how it computes, not what (models.py holds the paper).

- `temporal_conv`: the k×1 convolution over frames ('xla' or 'dft', chosen once per
  network with `use_temporal_conv`).
- `BatchNorm`: flax's BatchNorm with a gradient that keeps only its input.
- `rows_matmul`: x · w with a kernel gradient that suits XLA's CPU backend.
- `layer_output`: a layer's ReLU computed once into memory on CPU.
"""

from stbln_jax.ops.batch_norm import BatchNorm
from stbln_jax.ops.matmul import rows_matmul
from stbln_jax.ops.output import layer_output
from stbln_jax.ops.output import materialize_outputs
from stbln_jax.ops.temporal import current_temporal_conv
from stbln_jax.ops.temporal import resolve_temporal_conv
from stbln_jax.ops.temporal import TEMPORAL_CONV_IMPLS
from stbln_jax.ops.temporal import temporal_conv
from stbln_jax.ops.temporal import use_temporal_conv
