"""The network: ST layers (Fig. 2), aggregated layers (Fig. 3) and the classifier.

Two architectures (`arch`) hold the same equations:
- 'released': the authors' released layers (negarhdr/skeleton-based-action-recognition,
  model/stbln.py, agcn.py and stgcn.py), which produced the paper's figures. Every
  convolution and channel map has a bias. ST-BLN (bilinear): Residual/V is a 1×1 conv +
  BN in every layer, Residual/T a 9×1 conv + BN in layers 2-10. ST-GCN (multiplicative)
  and 2s-AGCN (additive, symmetric): Residual/V and Residual/T are the identity where
  shapes match and 1×1 convs + BN elsewhere; the additive and symmetric mixers add
  2s-AGCN's data-dependent C_p (`mixers`). 5,236,198 / 3,469,510 / 3,141,478 parameters
  (bilinear / additive / multiplicative) at 60 classes.
- 'lean': the paper's text read literally: no biases (every map is followed by a BN),
  identity residuals where shapes match, no C_p.
Both: no Residual/T in layer 1; the BN after the spatial sum starts with scale 1e-6 (as
2s-AGCN), so each layer starts close to its residual path; BN momentum 0.9 (PyTorch's
0.1) and ε = 1e-5.

Aggregation at λ (`aggregate_at`, bilinear only): layer λ maps the V joints to one node
(Fig. 2 with V_out = 1; its residuals map (V_in, C_in) to (1, C_out)). After it, 'lean'
uses Fig. 3's layer (a channel map, no Residual/V) and 'released' the released block on
one node: only the latter gives Fig. 5's FLOP ratios (×2.79 / ×2.15 at λ = 6 / 7 against
×2.91 / ×2.21). λ counts layers of the full layer list: a network cut to its first k
layers (Table II) with k < λ never aggregates.

Tensors inside the network are frames-major and channels-last, (T, N·M, V, C); the public
input is (N, T, M, V, C) = (samples, frames, persons, joints, coordinates).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stbln_jax import graph
from stbln_jax import initializers
from stbln_jax import mixers
from stbln_jax import ops
from stbln_jax.data import layouts

Array = jax.Array
Dtype = Any

ARCHS = ('released', 'lean')
_SPATIAL_BN_SCALE = 1e-6


# The `config.model` fields a built dataset decides: None in a config means the
# dataset's (`evaluate.fit_to_dataset`); a value is checked against it.
DATASET_FIELDS = ('num_classes', 'layout', 'num_persons', 'num_joints', 'in_channels')


class ConfigError(ValueError):
  """A model or training configuration that cannot work, with what to change."""


def _batch_norm(train: bool, dtype: Dtype, scale: float = 1.0,
                name: str | None = None) -> ops.BatchNorm:
  return ops.BatchNorm(use_running_average=not train, dtype=dtype, scale_init_value=scale,
                       name=name)


class Linear(nn.Module):
  """A channel map x · W (+ b): 'kernel' (C_in, C_out) and 'bias', as nn.Dense names them.

  Its kernel gradient suits XLA's CPU backend (`ops.rows_matmul`).
  """
  features: int
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Callable | None = None
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', self.kernel_init or initializers.kaiming_fan_out(),
                        (x.shape[-1], self.features), jnp.float32)
    y = ops.rows_matmul(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), jnp.float32).astype(self.dtype)
    return y


class _ConvKernel(nn.Module):
  """Holds the k×1 kernel under the name nn.Conv uses ('kernel', shape (k, 1, C, D))."""
  features: int
  kernel_size: int
  stride: int
  use_bias: bool
  dtype: Dtype
  kernel_init: Callable | None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', self.kernel_init or initializers.kaiming_fan_out(),
                        (self.kernel_size, 1, x.shape[-1], self.features), jnp.float32)
    y = ops.temporal_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y


class TemporalConv(nn.Module):
  """Convolution over frames with a k×1 kernel, 'same' padding and stride s.

  (T, N, V, C_in) → (ceil(T/s), N, V, C_out); each node is convolved independently.
  """
  features: int
  kernel_size: int = 9
  stride: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Callable | None = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return _ConvKernel(self.features, self.kernel_size, self.stride, self.use_bias,
                       self.dtype, self.kernel_init, name='conv')(x)


class NodeChannelMap(nn.Module):
  """Maps (V_in, C_in) to (V_out, C_out) per frame: the residual when V changes.

  The paper's C_out·V_out filters of size C_in×1×V_in, i.e. a dense layer on the
  flattened (V_in·C_in) features of each frame, reshaped to (V_out, C_out).
  """
  num_nodes: int
  features: int
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Callable | None = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    lead, (v, c) = x.shape[:-2], x.shape[-2:]
    y = Linear(self.num_nodes * self.features, self.use_bias, self.dtype, self.kernel_init,
               name='dense')(x.reshape(*lead, v * c))
    return y.reshape(*lead, self.num_nodes, self.features)


class Projection(nn.Module):
  """A residual path that changes shape: a k×1 conv over frames (stride s), then BN.

  The conv maps C_in → C_out on every node, or (V_in·C_in) → C_out on one node when V
  changes to V_out = 1 (k = 1 with any V_out: `NodeChannelMap`). 'map' is a `Linear` or
  `NodeChannelMap` for k = 1 (a strided 1×1 conv reads every s-th frame), else a
  `TemporalConv` on the flattened nodes.
  """
  features: int
  num_nodes: int
  stride: int = 1
  kernel_size: int = 1
  released: bool = False  # a bias, and PyTorch's kaiming_normal_ over the conv's fan-out
  dtype: Dtype = jnp.float32
  torch_default_init: bool = False  # PyTorch's default (the released ST-BLN's same-V Residual/V)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    v_in, c_in = x.shape[-2:]
    fan_in = c_in * self.kernel_size * (v_in if v_in != self.num_nodes else 1)
    kernel_init = bias_init = None
    if self.released:
      kernel_init = initializers.he_normal(fan_in // c_in * self.features)
    if self.torch_default_init:
      kernel_init = bias_init = initializers.torch_uniform(fan_in)
    if self.kernel_size > 1:
      if v_in != self.num_nodes:
        x = x.reshape(*x.shape[:-2], 1, v_in * c_in)
      y = TemporalConv(self.features, self.kernel_size, self.stride, self.released, self.dtype,
                       kernel_init, name='map')(x)
    else:
      x = jax.lax.slice_in_dim(x, 0, None, self.stride, axis=0)
      if v_in != self.num_nodes:
        y = NodeChannelMap(self.num_nodes, self.features, self.released, self.dtype,
                           kernel_init, name='map')(x)
      else:
        y = Linear(self.features, self.released, self.dtype, kernel_init,
                   bias_init or nn.initializers.zeros, name='map')(x)
    return _batch_norm(train, self.dtype, name='bn')(y)


class STLayer(nn.Module):
  """A spatio-temporal layer (Fig. 2) with any of the four mixers.

  spatial:  Σ_p U_p H W_p → BN → + Residual/V → ReLU
  temporal: k×1 conv over T (stride s) → BN → + Residual/T → ReLU

  Residual/V and Residual/T are the identity where shapes match and a `Projection`
  elsewhere (Residual/T with the temporal stride); the released ST-BLN (`released` and
  the bilinear mixer) projects always, Residual/T with a k×1 conv. `residual=False`
  drops Residual/T (layer 1).
  """
  features: int
  mixer: str
  stride: int = 1
  adjacency: Any = None
  num_nodes_out: int | None = None
  symmetric_rank: int | None = None
  residual: bool = True
  temporal_kernel: int = 9
  released: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    v_in, c_in = x.shape[-2:]
    v_out = v_in if self.num_nodes_out is None else self.num_nodes_out
    same_shape = c_in == self.features and v_in == v_out
    always_project = self.released and self.mixer == 'bilinear'
    y = mixers.make_mixer(self.mixer, self.features, adjacency=self.adjacency,
                          num_nodes_out=self.num_nodes_out, rank=self.symmetric_rank,
                          dtype=self.dtype, released=self.released)(x)
    y = _batch_norm(train, self.dtype, _SPATIAL_BN_SCALE, name='bn_spatial')(y)
    if same_shape and not always_project:
      y = y + x
    else:
      y = y + Projection(self.features, v_out, 1, 1, self.released, self.dtype,
                         torch_default_init=always_project and v_in == v_out,
                         name='residual_v')(x, train)
    y = nn.relu(y)

    y = TemporalConv(self.features, self.temporal_kernel, self.stride, self.released,
                     self.dtype, name='temporal')(y)
    y = _batch_norm(train, self.dtype, name='bn_temporal')(y)
    if self.residual:
      if same_shape and self.stride == 1 and not always_project:
        y = y + x
      else:
        taps = self.temporal_kernel if always_project else 1
        y = y + Projection(self.features, v_out, self.stride, taps, self.released, self.dtype,
                           name='residual_t')(x, train)
    return ops.layer_output(y)


class AggregatedLayer(nn.Module):
  """A layer after aggregation (Fig. 3), V_in = V_out = 1 (the 'lean' architecture).

  With one node, U_p is a scalar that folds into W_p, so the spatial step is a plain
  channel map: linear → BN → ReLU (no Residual/V), then the temporal block of Fig. 2.
  """
  features: int
  stride: int = 1
  temporal_kernel: int = 9
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    c_in = x.shape[-1]
    y = Linear(self.features, dtype=self.dtype, name='linear')(x)
    y = nn.relu(_batch_norm(train, self.dtype, name='bn_spatial')(y))
    y = TemporalConv(self.features, self.temporal_kernel, self.stride, dtype=self.dtype,
                     name='temporal')(y)
    y = _batch_norm(train, self.dtype, name='bn_temporal')(y)
    if c_in == self.features and self.stride == 1:
      y = y + x
    else:
      y = y + Projection(self.features, 1, self.stride, dtype=self.dtype,
                         name='residual_t')(x, train)
    return ops.layer_output(y)


class SpatioTemporalNet(nn.Module):
  """ST-GCN-style network with a chosen spatial mixer, optionally aggregating at λ.

  input (N, T, M, V, C) → data BN (per person, joint and coordinate, over N and T) →
  persons folded into the batch → layers → mean over T and V → mean over persons →
  dense → logits (N, num_classes), float32. `layout` names the skeleton whose graph
  gives Â (Eqs. 1-3); the bilinear mixer (Eq. 4) does not use it. `temporal_conv`
  picks the implementation of every temporal convolution (`ops.temporal_conv`): same
  values, different speed.
  """
  num_classes: int
  mixer: str = 'bilinear'
  channels: Sequence[int] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
  strides: Sequence[int] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
  aggregate_at: int | None = None
  symmetric_rank: int | None = None
  temporal_kernel: int = 9
  adjacency_normalization: str = 'mean'
  layout: str | layouts.Layout = 'ntu25'
  arch: str = 'released'
  dtype: Dtype = jnp.float32
  temporal_conv: str = 'auto'

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    n, t, m, v, c = x.shape
    x = nn.BatchNorm(use_running_average=not train, axis=(2, 3, 4),
                     momentum=ops.batch_norm.MOMENTUM, epsilon=ops.batch_norm.EPSILON,
                     dtype=self.dtype, param_dtype=jnp.float32, name='data_bn')(x)
    x = jnp.transpose(x, (1, 0, 2, 3, 4)).reshape(t, n * m, v, c)  # (T, N·M, V, C)
    adjacency = None
    if self.mixer != 'bilinear':
      adjacency = graph.adjacency(self.layout, self.adjacency_normalization)
      if adjacency.shape[-1] != v:
        raise ConfigError(f'mixer {self.mixer!r} uses the {adjacency.shape[-1]}-joint graph '
                          f'of layout {layouts.get_layout(self.layout).name!r}, but the input '
                          f'has {v} joints')
    released = self.arch == 'released'
    lam = self.aggregate_at
    with ops.use_temporal_conv(self.temporal_conv):
      for i, (features, stride) in enumerate(zip(self.channels, self.strides), start=1):
        if lam is not None and i > lam and not released:
          x = AggregatedLayer(features, stride, self.temporal_kernel, self.dtype,
                              name=f'layer_{i}')(x, train)
        else:
          x = STLayer(features, self.mixer, stride, adjacency,
                      num_nodes_out=1 if i == lam else None,
                      symmetric_rank=self.symmetric_rank, residual=i > 1,
                      temporal_kernel=self.temporal_kernel, released=released,
                      dtype=self.dtype, name=f'layer_{i}')(x, train)

    x = jnp.mean(x.astype(jnp.float32), axis=(0, 2))  # global average pool over T and V
    x = jnp.mean(x.reshape(n, m, -1), axis=1)  # average over persons
    bias_init = initializers.torch_uniform(x.shape[-1]) if released else nn.initializers.zeros
    return nn.Dense(self.num_classes,
                    kernel_init=initializers.he_normal(self.num_classes),
                    bias_init=bias_init, param_dtype=jnp.float32, name='head')(x)


# ---- Building from a config ------------------------------------------------------

def layout_of(cfg) -> layouts.Layout:
  """The skeleton layout of a `config.model`: its `custom_layout` (a layout file's,
  copied from the dataset) if set, else the registered `layout`."""
  return layouts.from_fields(cfg.get('layout'), cfg.get('custom_layout'))


def strides_of(cfg) -> tuple[int, ...]:
  """`model.strides`, or where unset one per layer: 2 where a layer after the first
  widens the channels, 1 elsewhere (2s-AGCN's (1, 1, 1, 1, 2, 1, 1, 2, 1, 1) for its
  channels)."""
  if cfg.get('strides') is not None:
    return tuple(cfg.strides)
  channels = tuple(cfg.channels)
  return tuple(2 if i and c > channels[i - 1] else 1 for i, c in enumerate(channels))


def validate_model_config(cfg) -> None:
  """Checks a `config.model` once, with messages that say what to change.

  The fields a dataset decides (`DATASET_FIELDS`) may be unset (None); they are
  checked against each other where set.
  """
  if cfg.mixer not in mixers.MIXERS:
    raise ConfigError(f'model.mixer={cfg.mixer!r} is not a mixer; choose one of {mixers.MIXERS}')
  if cfg.get('arch', 'released') not in ARCHS:
    raise ConfigError(f'model.arch={cfg.arch!r} is not an architecture; choose one of {ARCHS}')
  strides = strides_of(cfg)
  if len(cfg.channels) != len(strides):
    raise ConfigError(f'model.channels has {len(cfg.channels)} entries but model.strides has '
                      f'{len(strides)}; give one stride per layer, or leave model.strides '
                      f'unset to derive them from the channels')
  total = len(cfg.channels)
  if not 1 <= cfg.num_layers <= total:
    raise ConfigError(f'model.num_layers={cfg.num_layers} must be in 1..{total} '
                      f'(the length of model.channels)')
  lam = cfg.aggregate_at
  if lam is not None:
    if cfg.mixer != 'bilinear':
      raise ConfigError(f"model.aggregate_at (λ)={lam} needs model.mixer='bilinear': only the "
                        f"bilinear mixer (Eq. 4) can change the number of nodes, not "
                        f"{cfg.mixer!r}. Leave aggregate_at unset for the other mixers.")
    if not 1 <= lam <= total + 1:
      raise ConfigError(f'model.aggregate_at (λ)={lam} must be in 1..{total} '
                        f'(or {total + 1} or unset for no aggregation)')
  for name in ('num_classes', 'num_persons', 'num_joints', 'in_channels'):
    value = cfg.get(name)
    if value is not None and value < 1:
      raise ConfigError(f'model.{name}={value} must be positive (or unset: the dataset\'s)')
  if cfg.get('layout') is not None or cfg.get('custom_layout'):
    if not cfg.get('custom_layout') and cfg.layout not in layouts.LAYOUTS:
      raise ConfigError(f'model.layout={cfg.layout!r} is not a skeleton layout; choose one of '
                        f'{sorted(layouts.LAYOUTS)}, or leave it unset to take the dataset\'s '
                        f'(a layout file\'s)')
    try:
      layout = layout_of(cfg)
    except ValueError as e:
      raise ConfigError(f'model.custom_layout: {e}') from None
    # Â (Eqs. 1-3) is the layout's graph; the bilinear mixer (Eq. 4) learns its own U
    # and only needs V, so it runs on any number of joints.
    v = layout.num_joints
    if cfg.mixer != 'bilinear' and cfg.get('num_joints') not in (None, v):
      raise ConfigError(f'model.num_joints={cfg.num_joints} does not fit model.layout='
                        f'{layout.name!r} ({v} joints), whose graph gives Â for model.mixer='
                        f'{cfg.mixer!r}; leave both unset (the dataset\'s), or set model.layout '
                        f'to the dataset\'s layout and model.num_joints to its joints')
  rank, v = cfg.get('symmetric_rank'), cfg.get('num_joints')
  if rank is not None and (rank < 1 or v is not None and rank > v):
    raise ConfigError(f'model.symmetric_rank={rank} must be in 1..{v or "V"}')
  if cfg.get('adjacency_normalization', 'mean') not in graph.NORMALIZATIONS:
    raise ConfigError(f'model.adjacency_normalization={cfg.adjacency_normalization!r} must be '
                      f'one of {graph.NORMALIZATIONS}')
  if cfg.get('dtype', 'float32') not in ('float32', 'bfloat16'):
    raise ConfigError(f"model.dtype={cfg.dtype!r} must be 'float32' or 'bfloat16'")
  if cfg.get('temporal_conv', 'auto') not in ops.TEMPORAL_CONV_IMPLS:
    raise ConfigError(f'model.temporal_conv={cfg.temporal_conv!r} must be one of '
                      f'{ops.TEMPORAL_CONV_IMPLS}')


def check_class_names(cfg, class_names, where: str) -> None:
  """ConfigError unless the head of `config.model` gives one logit per class name (a run
  trained with a head that did not fit its dataset does not)."""
  if len(class_names) != cfg.num_classes:
    raise ConfigError(f'{where}: the network gives model.num_classes={cfg.num_classes} '
                      f'logits, but the run names {len(class_names)} classes: it was '
                      f'trained with a head that does not fit its dataset; train it again')


def create_model(cfg) -> SpatioTemporalNet:
  """The network described by a `config.model` (see configs/default.py) whose
  dataset fields are set (`evaluate.fit_to_dataset`)."""
  validate_model_config(cfg)
  # (A config from before layouts has no `layout`: NTU's.)
  unset = [name for name in DATASET_FIELDS if name in cfg and cfg[name] is None]
  if unset:
    raise ConfigError(f'model.{", model.".join(unset)} unset: they come from the dataset '
                      f'(evaluate.fit_to_dataset), or set them')
  k = cfg.num_layers
  lam = cfg.aggregate_at
  if lam is not None and lam > k:
    lam = None  # the first k layers of the λ network (Table II) do not reach λ
  layout = layout_of(cfg)
  name, custom = layouts.custom_fields(layout)
  return SpatioTemporalNet(
      num_classes=cfg.num_classes,
      mixer=cfg.mixer,
      channels=tuple(cfg.channels[:k]),
      strides=strides_of(cfg)[:k],
      aggregate_at=lam,
      symmetric_rank=cfg.get('symmetric_rank'),
      temporal_kernel=cfg.get('temporal_kernel', 9),
      adjacency_normalization=cfg.get('adjacency_normalization', 'mean'),
      layout=layout if custom else name,  # a registered layout by name
      arch=cfg.get('arch', 'released'),
      dtype=jnp.dtype(cfg.get('dtype', 'float32')),
      temporal_conv=cfg.get('temporal_conv', 'auto'),
  )


def input_shape(cfg, batch_size: int, num_frames: int) -> tuple[int, ...]:
  """Shape of a model input batch: (N, T, M, V, C)."""
  return (batch_size, num_frames, cfg.num_persons, cfg.num_joints, cfg.in_channels)


def init_variables(model: nn.Module, cfg, rng: Array, num_frames: int = 16) -> dict:
  """Initial {'params', 'batch_stats'} (shapes do not depend on T or the batch size)."""
  x = jnp.zeros(input_shape(cfg, 2, num_frames), jnp.float32)
  return jax.jit(lambda r: model.init(r, x, train=False))(rng)
