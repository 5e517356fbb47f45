r"""Exports a trained workdir's network as StableHLO (`jax.export`) with a JSON sidecar.

  python -m stbln_jax.export --workdir=/tmp/cv_bilinear --output=/tmp/cv_bilinear.stablehlo
  python -m stbln_jax.export --workdir=... --output=... --batch_size=1 --num_frames=64

Batch size and frame count are symbolic unless given. The export is the inference
forward pass (N, T, M, V, C) -> logits with the checkpoint's variables as constants:
- every BatchNorm uses its running statistics, so each is a per-channel multiply-add by
  constants that XLA's constant folding computes once at compile time (the kernels
  before them are not rescaled: the export is the network's own arithmetic);
- a symmetric model (Eq. 3) is folded to the additive one (Eq. 2) with M = L Lᵀ
  (`mixers.fold_symmetric_params`), exact and cheaper;
- with a symbolic frame count every temporal convolution is XLA's own ('xla'), whose
  shapes need no frame count at trace time; with a fixed one, the config's choice, and
  with the 'dft' convolution, inputs without a second person run the layers on the first
  person alone (the absent person's contribution to the logits is a constant:
  `forward_single_person`).
`stbln_jax.serving.load` runs the result with `jax` and `numpy` alone.

TensorFlow (the road to TFLite and ONNX): where it is installed, `--saved_model=DIR`
also writes a SavedModel through `jax2tf` (native serialisation of the same function).
"""

import json
import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import mixers
from stbln_jax import models
from stbln_jax import ops
from stbln_jax import serving
from stbln_jax import sharding
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import ntu_rgbd


def preprocessing_of(dataset: str) -> str:
  """The builder's preprocessing of `dataset` ('ntu_rgbd/<config>[:version]'), as `predict`."""
  return ntu_rgbd.get_config(dataset.split('/')[-1].split(':')[0]).preprocessing


def inference_model(model_cfg, variables: dict) -> tuple[models.SpatioTemporalNet, dict]:
  """The network and variables to export: a symmetric model folded to additive."""
  cfg = model_cfg.copy_and_resolve_references()
  if cfg.mixer == 'symmetric':
    cfg.mixer = 'additive'
    variables = dict(variables, params=mixers.fold_symmetric_params(variables['params']))
  return models.create_model(cfg), variables


def export_forward(model: models.SpatioTemporalNet, variables: dict, input_shape,
                   platforms=None, single_person_path: bool = False) -> jax.export.Exported:
  """`jax.export` of `model.apply(variables, x, train=False)` for x of `input_shape`.

  Args:
    input_shape: (N, T, M, V, C); N and T may be None (symbolic).
    platforms: e.g. ('cpu', 'cuda'); None for the default backend.
    single_person_path: with a fixed T and M = 2, inputs whose second person is all
      zeros (nobody) run the network on the first person alone (`forward_single_person`).
  """
  n, t = input_shape[:2]
  sym_n, sym_t = jax.export.symbolic_shape('N, T')
  shape = (sym_n if n is None else n, sym_t if t is None else t) + tuple(input_shape[2:])
  if t is None:
    model = model.clone(temporal_conv='xla')
  variables = jax.device_get(variables)
  if single_person_path:
    if t is None or input_shape[2] != 2:
      raise ValueError(f'the single-person path needs a fixed frame count and 2 persons, '
                       f'not input {input_shape}')
    forward = forward_single_person(model, variables, t)
  else:
    forward = lambda x: model.apply(variables, x, train=False)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.export.export(jax.jit(forward), platforms=platforms)(x)


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
  absent = jax.device_get(model.apply(second, zeros, train=False))[0]  # head(f_2(0))

  def forward(x):
    def one(x):
      return (model.apply(first, x[:, :, :1], train=False) + absent) / 2
    return jax.lax.cond(jnp.all(x[:, :, 1] == 0), one,
                        lambda x: model.apply(variables, x, train=False), x)
  return forward


def export_run(workdir: str, output: str, *, batch_size: int | None = None,
               num_frames: int | None = None, step: int | None = None,
               platforms=None, saved_model: str | None = None) -> dict:
  """Writes `output` and `output`.json from the workdir's checkpoint; returns the sidecar.

  With a fixed frame count and the 'dft' temporal convolution (CPU's 'auto') the export
  has the single-person path (`export_forward`); XLA's own convolution ran about 15×
  slower inside the conditional it needs (benchmarks/latency.py, CPU), so not with it.
  """
  config = workdir_lib.load_config(workdir)
  class_names = workdir_lib.load_class_names(workdir)
  if config.model.num_joints != 25:
    raise ValueError(f'{workdir}: model.num_joints={config.model.num_joints}; only the '
                     f'NTU 25-joint layout exports')
  device = sharding.replicated(sharding.make_mesh(jax.local_devices()[:1]))
  variables, _, step = checkpoint.restore_variables(workdir, device, step)
  model, variables = inference_model(config.model, variables)
  input_shape = models.input_shape(config.model, batch_size, num_frames)
  conv = 'xla' if num_frames is None else ops.resolve_temporal_conv(model.temporal_conv)
  single_person_path = (num_frames is not None and config.model.num_persons == 2
                        and conv == 'dft')
  exported = export_forward(model, variables, input_shape, platforms, single_person_path)
  data = bytes(exported.serialize())
  meta = {
      'format': serving.FORMAT,
      'layout': 'ntu25',
      'stream': config.stream,
      'preprocessing': preprocessing_of(config.dataset),
      'class_names': list(class_names),
      'input_shape': ['N' if batch_size is None else batch_size,
                      'T' if num_frames is None else num_frames] + list(input_shape[2:]),
      'num_frames': config.num_frames,  # the training clips' length
      'model': {'mixer': config.model.mixer, 'exported_as': model.mixer, 'arch': model.arch,
                'num_layers': config.model.num_layers,
                'aggregate_at': config.model.aggregate_at,
                'temporal_conv': conv,
                'single_person_path': single_person_path,
                'platforms': list(exported.platforms)},
      'step': int(step),
      'sha256': serving.sha256_of(data),
      'size': len(data),
  }
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'wb') as f:
    f.write(data)
  with open(serving.sidecar_path(output), 'w') as f:
    json.dump(meta, f, indent=1)
  if saved_model:
    write_saved_model(model, variables, input_shape, saved_model)
  return meta


def write_saved_model(model, variables: dict, input_shape, directory: str) -> None:
  """A TensorFlow SavedModel of the same forward pass (needs TensorFlow installed)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise cli.InputError(f'--saved_model={directory} needs TensorFlow: {e}') from e
  if input_shape[1] is None:
    model = model.clone(temporal_conv='xla')
  variables = jax.device_get(variables)
  dims = ', '.join(['N' if input_shape[0] is None else str(input_shape[0]),
                    'T' if input_shape[1] is None else str(input_shape[1])]
                   + [str(d) for d in input_shape[2:]])
  forward = jax2tf.convert(lambda x: model.apply(variables, x, train=False),
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
  flags.DEFINE_integer('checkpoint_step', None, 'Checkpoint to export (default: latest).')
  flags.DEFINE_list('platforms', None, "e.g. 'cpu,cuda' (default: this machine's).")
  flags.DEFINE_string('saved_model', None, 'Also write a TensorFlow SavedModel here (jax2tf).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.show_only_own_info_logs()
  meta = export_run(FLAGS.workdir, FLAGS.output, batch_size=FLAGS.batch_size,
                    num_frames=FLAGS.num_frames, step=FLAGS.checkpoint_step,
                    platforms=FLAGS.platforms, saved_model=FLAGS.saved_model)
  print(f'{FLAGS.output}: step {meta["step"]}, {meta["model"]["exported_as"]} '
        f'{meta["model"]["arch"]}, input {meta["input_shape"]}, {meta["size"]:,} bytes; '
        f'sidecar {serving.sidecar_path(FLAGS.output)}')
  return 0


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(OSError, models.ConfigError, checkpoint.CheckpointError,
                              serving.ExportError))
