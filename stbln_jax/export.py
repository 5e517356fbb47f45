r"""Exports a trained workdir's network as StableHLO (`jax.export`) with a JSON sidecar.

  python -m stbln_jax.export --workdir=/tmp/cv_bilinear --output=/tmp/cv_bilinear.stablehlo
  python -m stbln_jax.export --workdir=... --output=... --batch_size=1 --num_frames=64

Batch size and frame count are symbolic unless given. The export is the inference
forward pass (N, T, M, V, C) -> logits with the checkpoint's variables as constants:
- every BatchNorm that directly follows a linear map (the mixer's Σ_p U_p H W_p, a
  temporal convolution, a channel map) is folded into it (`fold_batch_norms`): the
  map's kernel and bias take the BN's per-channel scale and shift, and the BN is gone.
  The data BN (per person, joint and coordinate, ahead of the first mixer) follows no
  linear map and stays a multiply-add by constants. The sidecar lists the folded ones
  (`model.folded_batch_norms`);
- a symmetric model (Eq. 3) is folded to the additive one (Eq. 2) with M = L Lᵀ
  (`mixers.fold_symmetric_params`), exact and cheaper;
- with a symbolic frame count every temporal convolution is XLA's own ('xla'), whose
  shapes need no frame count at trace time; with a fixed one, the config's choice, and
  with the 'dft' convolution, inputs without a second person run the layers on the first
  person alone (the absent person's contribution to the logits is a constant:
  `forward_single_person`).
Any skeleton layout exports (`config.model.layout`, a layout file's included: V =
`config.model.num_joints`); the sidecar records it, what the last input axis holds (the
dataset's channels, `layout_and_channels`), the records' preprocessing and the
evaluation's temporal sampling, so that `serving.ExportedModel.prepare` makes inputs as
`predict` does. `stbln_jax.serving.load` runs the result with `jax`, `numpy` and
`flatbuffers` alone. The class names are the run's, one per logit.

TensorFlow (the road to TFLite and ONNX): where it is installed, `--saved_model=DIR`
also writes a SavedModel through `jax2tf` (native serialisation of the same function).
Every check (classes, layout, TensorFlow) runs before anything is written.
"""

import json
import os

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import mixers
from stbln_jax import models
from stbln_jax import ops
from stbln_jax import serving
from stbln_jax import sharding
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import layouts
from stbln_jax.data import build
from stbln_jax.data import preprocess


def layout_and_channels(config, channels: str | None = None
                        ) -> tuple[layouts.Layout, str]:
  """The run's layout (`models.layout_of`) and channels: `channels` if given, else
  its dataset's (`build.channels_of`); checked against the model's (V, C)."""
  try:
    layout = models.layout_of(config.model)
  except ValueError as e:
    raise models.ConfigError(f'model.layout: {e}') from None
  v = layout.num_joints
  if config.model.num_joints != v:
    raise models.ConfigError(f'model.num_joints={config.model.num_joints}, but layout '
                             f'{layout.name!r} has {v} joints')
  channels = channels or build.channels_of(config.dataset)
  if channels not in preprocess.CHANNELS:
    raise models.ConfigError(f'channels {channels!r} must be one of {preprocess.CHANNELS}')
  if len(channels) != config.model.in_channels:
    raise models.ConfigError(f'model.in_channels={config.model.in_channels}, but channels '
                             f'{channels!r} are {len(channels)}; name the dataset\'s with '
                             f'--channels')
  return layout, channels


def inference_model(model_cfg, variables: dict) -> tuple[models.SpatioTemporalNet, dict]:
  """The network and variables to export: a symmetric model folded to additive."""
  cfg = model_cfg.copy_and_resolve_references()
  if cfg.mixer == 'symmetric':
    cfg.mixer = 'additive'
    variables = dict(variables, params=mixers.fold_symmetric_params(variables['params']))
  return models.create_model(cfg), variables


# ---- BatchNorm folding ------------------------------------------------------------

MIXERS = (mixers.MultiplicativeMixer, mixers.AdditiveMixer, mixers.SymmetricMixer,
          mixers.BilinearMixer)


# The linear maps a BN can follow, each with where its kernel and bias lie (output
# channels on the last axis) and how often the BN's channels repeat along that axis.
def _linear_map(module) -> tuple[tuple[str, ...], tuple[str, ...], int] | None:
  if isinstance(module, models.Linear):
    return ('kernel',), ('bias',), 1
  if isinstance(module, models.TemporalConv):
    return ('conv', 'kernel'), ('conv', 'bias'), 1
  if isinstance(module, models.NodeChannelMap):  # (V_out·C_out) outputs, read as (V_out, C_out)
    return ('dense', 'kernel'), ('dense', 'bias'), module.num_nodes
  if isinstance(module, MIXERS):  # Σ_p U_p H W_p + Σ_p b_p
    return ('W',), ('bias',), 1
  return None


def batch_norm_inputs(model: nn.Module, variables: dict, x) -> dict[str, tuple | None]:
  """For every BatchNorm of `model` (by path), the linear map whose output is its input.

  Traces `model.apply(variables, x, train=False)` abstractly; a BN whose input is the
  very array a linear map (`_linear_map`) returned maps to (that map's path, where
  its kernel and bias lie and the repeat of the BN's channels, the BN's ε); any other
  BN to None.
  """
  outputs, found = {}, {}

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    if isinstance(module, (ops.BatchNorm, nn.BatchNorm)):
      source = outputs.get(id(args[0]))
      follows = (isinstance(module, ops.BatchNorm) and source is not None
                 and source[0] is args[0])
      found['/'.join(module.path)] = (*source[1:], module.epsilon) if follows else None
    y = next_fun(*args, **kwargs)
    linear = _linear_map(module)
    if linear is not None:  # an outer module returning the same array takes it over
      outputs[id(y)] = (y, module.path, linear)
    return y

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return found


def fold_batch_norms(model: nn.Module, variables: dict, x) -> tuple[dict, list[str]]:
  """The variables with every BN that directly follows a linear map folded into it.

  For BN(y) = (y - μ)·s + β with s = γ/√(σ² + ε) and y = x·W + b, the map gets
  W' = W·s and b' = b·s + (β - μ·s), per output channel, and the BN becomes the
  identity; where the map has no bias, the BN adds β - μ·s (`inference_apply`). A
  folded BN keeps no statistics. Exact where the map's output feeds the BN alone, as
  everywhere in `models`. Returns the variables and the folded BNs' paths.
  """
  params, stats = _tree_copy(variables['params']), _tree_copy(variables['batch_stats'])
  folded = []
  for bn_path, source in batch_norm_inputs(model, variables, x).items():
    if source is None:
      continue
    map_path, (kernel_at, bias_at, repeat), epsilon = source
    bn_keys = tuple(bn_path.split('/'))
    bn, bn_stats = _at(params, bn_keys), _at(stats, bn_keys)
    s = np.asarray(bn['scale'], np.float64) / np.sqrt(
        np.asarray(bn_stats['var'], np.float64) + epsilon)
    shift = np.asarray(bn['bias'], np.float64) - np.asarray(bn_stats['mean'], np.float64) * s
    linear = _at(params, tuple(map_path))
    kernel_parent, kernel_name = _at(linear, kernel_at[:-1]), kernel_at[-1]
    kernel_parent[kernel_name] = _scaled(kernel_parent[kernel_name], np.tile(s, repeat))
    bias_parent, bias_name = _at(linear, bias_at[:-1]), bias_at[-1]
    if bias_name in bias_parent:
      bias = np.asarray(bias_parent[bias_name], np.float64) * np.tile(s, repeat)
      bias[(0,) * (bias.ndim - 1)] += np.tile(shift, repeat)  # a mixer's biases are summed
      bias_parent[bias_name] = bias.astype(np.float32)
      _at(params, bn_keys[:-1]).pop(bn_keys[-1])
    else:
      _at(params, bn_keys[:-1])[bn_keys[-1]] = {'bias': shift.astype(np.float32)}
    _at(stats, bn_keys[:-1]).pop(bn_keys[-1])
    folded.append(bn_path)
  return {'params': params, 'batch_stats': stats}, folded


def inference_apply(model: nn.Module, variables: dict, x):
  """`model.apply(variables, x, train=False)` where folded BNs are the identity.

  A BN without statistics (`fold_batch_norms`) returns its input, plus its 'bias'
  where it has one; the others run as usual, so unfolded variables work too.
  """
  def folded_batch_norm(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name == '__call__' and isinstance(module, ops.BatchNorm)
        and not module.has_variable('batch_stats', 'mean')):
      y = args[0]
      if module.has_variable('params', 'bias'):
        y = y + module.get_variable('params', 'bias').astype(y.dtype)
      return y
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(folded_batch_norm):
    return model.apply(variables, x, train=False)


def _tree_copy(tree):
  """Nested dicts of numpy arrays, copied (the folding edits them in place)."""
  if hasattr(tree, 'items'):
    return {k: _tree_copy(v) for k, v in tree.items()}
  return np.array(tree)


def _at(tree: dict, keys) -> dict:
  for key in keys:
    tree = tree[key]
  return tree


def _scaled(kernel, s: np.ndarray) -> np.ndarray:
  return (np.asarray(kernel, np.float64) * s).astype(np.float32)


# ---- Export -----------------------------------------------------------------------

def export_forward(model: models.SpatioTemporalNet, variables: dict, input_shape,
                   platforms=None, single_person_path: bool = False,
                   fold: bool = True) -> tuple[jax.export.Exported, list[str]]:
  """`jax.export` of the inference forward pass for x of `input_shape`.

  Args:
    input_shape: (N, T, M, V, C); N and T may be None (symbolic).
    platforms: e.g. ('cpu', 'cuda'); None for the default backend.
    single_person_path: with a fixed T and M = 2, inputs whose second person is all
      zeros (nobody) run the network on the first person alone (`forward_single_person`).
    fold: fold the BNs that directly follow a linear map (`fold_batch_norms`).
  Returns:
    The export and the paths of the folded BNs.
  """
  n, t = input_shape[:2]
  sym_n, sym_t = jax.export.symbolic_shape('N, T')
  shape = (sym_n if n is None else n, sym_t if t is None else t) + tuple(input_shape[2:])
  if t is None:
    model = model.clone(temporal_conv='xla')
  variables = jax.device_get(variables)
  folded = []
  if fold:
    probe = jnp.zeros((1, t or 16) + tuple(input_shape[2:]), jnp.float32)
    variables, folded = fold_batch_norms(model, variables, probe)
  if single_person_path:
    if t is None or input_shape[2] != 2:
      raise ValueError(f'the single-person path needs a fixed frame count and 2 persons, '
                       f'not input {input_shape}')
    forward = forward_single_person(model, variables, t)
  else:
    forward = lambda x: inference_apply(model, variables, x)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.export.export(jax.jit(forward), platforms=platforms)(x), folded


def person_variables(variables: dict, m: int) -> dict:
  """The variables of the same network for one person: slot `m` of the data BN."""
  def sliced(tree):
    return dict(tree, data_bn={k: v[m:m + 1] for k, v in tree['data_bn'].items()})
  return {'params': sliced(variables['params']),
          'batch_stats': sliced(variables['batch_stats'])}


def forward_single_person(model, variables: dict, num_frames: int):
  """The forward pass of (N, T, 2, V, C) inputs, with half the work when nobody is person 2.

  Inference runs every person through the layers on its own, then the logits are
  head(mean_m f_m(x_m)) = mean_m head(f_m(x_m)) (the head is affine). For an absent
  person (all zeros) head(f_2(0)) is a constant, computed here once for T frames; when
  every sample's second person is absent the network runs on the first alone.
  """
  first, second = person_variables(variables, 0), person_variables(variables, 1)
  zeros = jnp.zeros((1, num_frames, 1) + tuple(jax.tree.leaves(
      variables['params']['data_bn'])[0].shape[1:]), jnp.float32)
  absent = jax.device_get(inference_apply(model, second, zeros))[0]  # head(f_2(0))

  def forward(x):
    def one(x):
      return (inference_apply(model, first, x[:, :, :1]) + absent) / 2
    return jax.lax.cond(jnp.all(x[:, :, 1] == 0), one,
                        lambda x: inference_apply(model, variables, x), x)
  return forward


def export_run(workdir: str, output: str, *, batch_size: int | None = None,
               num_frames: int | None = None, step: int | str | None = None,
               platforms=None, saved_model: str | None = None,
               channels: str | None = None) -> dict:
  """Writes `output` and `output`.json from the workdir's checkpoint; returns the sidecar.

  With a fixed frame count and the 'dft' temporal convolution (CPU's 'auto') the export
  has the single-person path (`export_forward`); XLA's own convolution ran about 15×
  slower inside the conditional it needs (BENCHMARKS.md, CPU), so not with it.
  `channels` names what the last input axis holds where the dataset cannot be opened
  (`layout_and_channels`).
  """
  config = workdir_lib.load_config(workdir)
  class_names = workdir_lib.load_class_names(workdir)
  layout, channels = layout_and_channels(config, channels)
  models.check_class_names(config.model, class_names, workdir)
  if saved_model:
    _import_tensorflow(saved_model)
  device = sharding.replicated(sharding.make_mesh(jax.local_devices()[:1]))
  variables, _, step = checkpoint.restore_variables(workdir, device, step)
  model, variables = inference_model(config.model, variables)
  input_shape = models.input_shape(config.model, batch_size, num_frames)
  conv = 'xla' if num_frames is None else ops.resolve_temporal_conv(model.temporal_conv)
  single_person_path = (num_frames is not None and config.model.num_persons == 2
                        and conv == 'dft')
  exported, folded = export_forward(model, variables, input_shape, platforms,
                                    single_person_path)
  data = bytes(exported.serialize())
  layout_name, custom_layout = layouts.custom_fields(layout)
  meta = {
      'format': serving.FORMAT,
      'layout': layout_name,
      'custom_layout': custom_layout,
      'channels': channels,
      'stream': config.stream,
      'preprocessing': config.get('preprocessing') or build.preprocessing_of(config.dataset),
      'center_joint': config.get('center_joint'),
      'normalization': config.get('normalization', 'none'),
      'class_names': list(class_names),
      'input_shape': ['N' if batch_size is None else batch_size,
                      'T' if num_frames is None else num_frames] + list(input_shape[2:]),
      'num_frames': config.num_frames,  # the training clips' length
      # How evaluation sampled them (`serving.ExportedModel.prepare`).
      'temporal_sampling': config.get('temporal_sampling', 'pad'),
      'test_crop': config.get('test_crop', 0.95),
      'num_test_clips': config.get('num_test_clips', 1),
      'model': {'mixer': config.model.mixer, 'exported_as': model.mixer, 'arch': model.arch,
                'num_layers': config.model.num_layers,
                'aggregate_at': config.model.aggregate_at,
                'temporal_conv': conv,
                'single_person_path': single_person_path,
                'folded_batch_norms': folded,
                'platforms': list(exported.platforms)},
      'step': int(step),
      'sha256': serving.sha256_of(data),
      'size': len(data),
  }
  if saved_model:
    write_saved_model(model, variables, input_shape, saved_model)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'wb') as f:
    f.write(data)
  with open(serving.sidecar_path(output), 'w') as f:
    json.dump(meta, f, indent=1)
  return meta


def _import_tensorflow(directory: str):
  """(tensorflow, jax2tf), or InputError saying that --saved_model needs them."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise cli.InputError(f'--saved_model={directory} needs TensorFlow (nothing was '
                         f'written): {e}') from e
  return tf, jax2tf


def write_saved_model(model, variables: dict, input_shape, directory: str) -> None:
  """A TensorFlow SavedModel of the same forward pass (needs TensorFlow installed)."""
  tf, jax2tf = _import_tensorflow(directory)
  if input_shape[1] is None:
    model = model.clone(temporal_conv='xla')
  variables, _ = fold_batch_norms(model, jax.device_get(variables), jnp.zeros(
      (1, input_shape[1] or 16) + tuple(input_shape[2:]), jnp.float32))
  dims = ', '.join(['N' if input_shape[0] is None else str(input_shape[0]),
                    'T' if input_shape[1] is None else str(input_shape[1])]
                   + [str(d) for d in input_shape[2:]])
  forward = jax2tf.convert(lambda x: inference_apply(model, variables, x),
                           polymorphic_shapes=[f'({dims})'], native_serialization=True)
  module = tf.Module()
  module.f = tf.function(forward, autograph=False, input_signature=[
      tf.TensorSpec(tuple(input_shape), tf.float32)])
  tf.saved_model.save(module, directory)


FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program: `predict` and others define --workdir too.
  flags.DEFINE_string('workdir', None, 'Workdir of a training run.', required=True)
  flags.DEFINE_string('output', None, 'The StableHLO file to write (and FILE.json).',
                      required=True)
  flags.DEFINE_integer('batch_size', None, 'Fixed batch size (default: symbolic).',
                       lower_bound=1)
  flags.DEFINE_integer('num_frames', None, 'Fixed frame count (default: symbolic).',
                       lower_bound=1)
  flags.DEFINE_string('checkpoint_step', None, 'The checkpoint to export. ' + checkpoint.STEP_HELP)
  flags.DEFINE_list('platforms', None, "e.g. 'cpu,cuda' (default: this machine's).")
  flags.DEFINE_string('saved_model', None, 'Also write a TensorFlow SavedModel here (jax2tf).')
  flags.DEFINE_enum('channels', None, preprocess.CHANNELS,
                    "What the inputs' last axis holds (default: the dataset's, else xyz).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.show_only_own_info_logs()
  meta = export_run(FLAGS.workdir, FLAGS.output, batch_size=FLAGS.batch_size,
                    num_frames=FLAGS.num_frames, step=FLAGS.checkpoint_step,
                    platforms=FLAGS.platforms, saved_model=FLAGS.saved_model,
                    channels=FLAGS.channels)
  print(f'{FLAGS.output}: step {meta["step"]}, {meta["model"]["exported_as"]} '
        f'{meta["model"]["arch"]}, {meta["layout"]} {meta["channels"]}, input '
        f'{meta["input_shape"]}, {len(meta["model"]["folded_batch_norms"])} BNs folded, '
        f'{meta["size"]:,} bytes; sidecar {serving.sidecar_path(FLAGS.output)}')
  return 0


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(OSError, models.ConfigError, checkpoint.CheckpointError,
                              serving.ExportError))
