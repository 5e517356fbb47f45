r"""PyTorch checkpoints of the authors' released networks → a workdir of `arch='released'`.

  python -m stbln_jax.import_torch --checkpoint=stbln_cv_joint.pt --config=configs/cv.py \
      --workdir=/tmp/cv_stbln_torch
  python -m stbln_jax.main --mode=eval --workdir=/tmp/cv_stbln_torch
  python -m stbln_jax.predict --workdir=/tmp/cv_stbln_torch S001C001P001R001A011.skeleton

The checkpoint is a `state_dict` of the authors' `model/stbln.py` (mixer 'bilinear'),
`model/agcn.py` ('additive') or `model/stgcn.py` ('multiplicative'), or of OpenDR's ST-BLN
and ST-GCN (the same modules; its ST-BLN names the spatial step `gcn` where the authors'
says `bln`), saved with `torch.save` (a dict holding it under 'state_dict' or 'model' also
works) or an `.npz` of the same names (no PyTorch needed then); a `module.` prefix from
`nn.DataParallel` is dropped. The config says which network it is
(`--config.model.mixer=additive` for 2s-AGCN, `multiplicative` for ST-GCN) and must be the
released architecture. Every name is checked against the network the config describes
before anything is converted: the first missing, unexpected or mis-shaped entry is named
in a `StateDictError`. The workdir receives the config, the action names and the weights
as checkpoint step 0 (fresh optimizer state): evaluation and prediction read it like a
trained run's, and training in it starts from these weights.

From Python, `convert(state_dict, model_config)` returns the {'params', 'batch_stats'} of
`models.create_model(model_config)` from names mapped to numpy arrays or torch tensors.

Layouts: PyTorch's input is (N, C, T, V, M), ours (N, T, M, V, C); a 1×1 convolution
(out, in, 1, 1) is a Dense kernel (in, out); a k×1 convolution (out, in, k, 1) a kernel
(k, 1, in, out); their layers compute H·A, ours A·H, so every V×V matrix is transposed;
their `data_bn` normalises M·V·C channels ordered (person, joint, coordinate).
PyTorch is imported only to read a PyTorch file.
"""

from collections.abc import Mapping
import os
from typing import Any

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import train
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import ntu

# The released PyTorch network of each mixer, and the name of its spatial step.
NETWORKS = {'bilinear': ('STBLN', 'bln'), 'additive': ('AGCN', 'gcn'),
            'multiplicative': ('STGCN', 'gcn')}
PARTITIONS = 3


class StateDictError(ValueError):
  """A state_dict that does not fit the network of the config."""


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # a torch tensor, without importing torch
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def _authors_name(name: str) -> str:
  """The authors' name of an entry of OpenDR's ST-BLN, whose spatial step is `gcn`."""
  return name.replace('.gcn.gcn_residual.', '.bln.bln_residual.').replace('.gcn.', '.bln.')


def normalize(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Numpy arrays by the authors' names: a leading `module.` (DataParallel) dropped,
  OpenDR's ST-BLN names (`gcn.rand_graph`, `gcn.gcn_residual`) renamed (`bln.…`)."""
  if not isinstance(state_dict, Mapping):
    raise StateDictError(f'a state_dict is a mapping of names to arrays, not '
                          f'{type(state_dict).__name__}')
  out = {}
  for name, value in state_dict.items():
    out[name[len('module.'):] if name.startswith('module.') else name] = _to_numpy(value)
  if any(name.endswith('.gcn.rand_graph') for name in out):
    out = {_authors_name(name): value for name, value in out.items()}
  return out


# ---- The PyTorch network a config describes --------------------------------------

def torch_layout(cfg) -> dict[str, tuple[int, ...]]:
  """Name → shape of every state_dict entry of the released network of `cfg`."""
  if cfg.mixer not in NETWORKS:
    raise StateDictError(f'model.mixer={cfg.mixer!r} has no released PyTorch network; '
                          f'PyTorch checkpoints exist for {sorted(NETWORKS)}')
  if cfg.get('aggregate_at') is not None:
    raise StateDictError(f'model.aggregate_at={cfg.aggregate_at}: the released PyTorch '
                          f'networks do not aggregate joints; leave it unset')
  network, spatial = NETWORKS[cfg.mixer]
  v, taps = cfg.num_joints, cfg.get('temporal_kernel', 9)
  shapes: dict[str, tuple[int, ...]] = {}

  def conv(name, c_in, c_out, k=1):
    shapes[f'{name}.weight'] = (c_out, c_in, k, 1)
    shapes[f'{name}.bias'] = (c_out,)

  def bn(name, c):
    for field in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{name}.{field}'] = (c,)
    shapes[f'{name}.num_batches_tracked'] = ()

  bn('data_bn', cfg.num_persons * v * cfg.in_channels)
  c_in = cfg.in_channels
  strides = models.strides_of(cfg)
  for i in range(cfg.num_layers):
    c_out, stride = cfg.channels[i], strides[i]
    layer, step = f'layers.layer{i + 1}', f'layers.layer{i + 1}.{spatial}'
    shapes[f'{step}.rand_graph' if network == 'STBLN' else f'{step}.graph_attn'] = (
        PARTITIONS, v, v)
    for p in range(PARTITIONS):
      conv(f'{step}.g_conv.{p}', c_in, c_out)
      if network == 'AGCN':
        conv(f'{step}.a_conv.{p}', c_in, c_out // 4)
        conv(f'{step}.b_conv.{p}', c_in, c_out // 4)
    shortcut = f'{step}.bln_residual' if network == 'STBLN' else f'{step}.gcn_residual'
    if network == 'STBLN' or c_in != c_out:
      conv(f'{shortcut}.0', c_in, c_out)
      bn(f'{shortcut}.1', c_out)
    bn(f'{step}.bn', c_out)
    conv(f'{layer}.tcn.t_conv', c_out, c_out, taps)
    bn(f'{layer}.tcn.bn', c_out)
    if i > 0 and network == 'STBLN':
      conv(f'{layer}.residual.t_conv', c_in, c_out, taps)
      bn(f'{layer}.residual.bn', c_out)
    elif i > 0 and (c_in != c_out or stride != 1):
      conv(f'{layer}.residual.t_conv', c_in, c_out, 1)
      bn(f'{layer}.residual.bn', c_out)
    c_in = c_out
  shapes['fc.weight'] = (cfg.num_classes, c_in)
  shapes['fc.bias'] = (cfg.num_classes,)
  return shapes


def check(arrays: Mapping[str, np.ndarray], cfg) -> None:
  """Raises `StateDictError` naming the first missing, unexpected or mis-shaped entry."""
  network = NETWORKS.get(cfg.mixer, ('?',))[0]
  layout = torch_layout(cfg)
  # Old PyTorch versions save no `num_batches_tracked`; nothing here reads it.
  missing = [k for k in layout if k not in arrays and not k.endswith('num_batches_tracked')]
  if missing:
    raise StateDictError(f'{missing[0]} is missing from the checkpoint ({len(missing)} '
                          f'entries of the {network} network of the config are missing)')
  unexpected = [k for k in arrays if k not in layout]
  if unexpected:
    raise StateDictError(f'{unexpected[0]} is not an entry of the {network} network of the '
                          f'config ({len(unexpected)} unexpected entries; is model.mixer, '
                          f'num_layers or num_persons right?)')
  for name, shape in layout.items():
    if name in arrays and tuple(arrays[name].shape) != shape:
      raise StateDictError(f'{name} has shape {tuple(arrays[name].shape)}, but the {network} '
                            f'network of the config has {shape} (model.num_classes, '
                            f'num_joints, num_persons or in_channels?)')


# ---- Conversion ------------------------------------------------------------------

def _matrix(w: np.ndarray) -> np.ndarray:
  """A 1×1 convolution's (out, in, 1, 1) or a Linear's (out, in) weight as (in, out)."""
  return w.reshape(w.shape[0], -1).T


def _nodes(a: np.ndarray) -> np.ndarray:
  """(P, V, V) matrices of H·A as the A·H matrices of the same mixing: A_pᵀ."""
  return np.swapaxes(a, -1, -2)


class _Tree:
  """Builds {'params', 'batch_stats'} from the named arrays of a checked state_dict."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = arrays
    self.variables: dict = {'params': {}, 'batch_stats': {}}

  def put(self, collection: str, path: tuple[str, ...], value: np.ndarray) -> None:
    node = self.variables[collection]
    for key in path[:-1]:
      node = node.setdefault(key, {})
    # A copy: a torch tensor's numpy view would follow later in-place updates of it.
    node[path[-1]] = np.array(value, np.float32, copy=True)

  def batch_norm(self, name: str, path: tuple[str, ...], shape=None) -> None:
    a = self.arrays
    for field, value in (('scale', a[f'{name}.weight']), ('bias', a[f'{name}.bias'])):
      self.put('params', path + (field,), value if shape is None else value.reshape(shape))
    for field, value in (('mean', a[f'{name}.running_mean']), ('var', a[f'{name}.running_var'])):
      self.put('batch_stats', path + (field,), value if shape is None else value.reshape(shape))

  def dense(self, name: str, path: tuple[str, ...]) -> None:
    """A 1×1 convolution or a Linear → 'kernel' (in, out) and 'bias'."""
    self.put('params', path + ('kernel',), _matrix(self.arrays[f'{name}.weight']))
    self.put('params', path + ('bias',), self.arrays[f'{name}.bias'])

  def conv(self, name: str, path: tuple[str, ...]) -> None:
    """A k×1 convolution (out, in, k, 1) → 'kernel' (k, 1, in, out) and 'bias'."""
    self.put('params', path + ('kernel',),
             np.transpose(self.arrays[f'{name}.weight'], (2, 3, 1, 0)))
    self.put('params', path + ('bias',), self.arrays[f'{name}.bias'])

  def partitions(self, name: str, path: tuple[str, ...]) -> None:
    """Per-partition 1×1 convolutions `name.p` → 'kernel' (in, P·out) and 'bias' (P·out,)."""
    p = range(PARTITIONS)
    self.put('params', path + ('kernel',), np.concatenate(
        [_matrix(self.arrays[f'{name}.{i}.weight']) for i in p], axis=1))
    self.put('params', path + ('bias',), np.concatenate(
        [self.arrays[f'{name}.{i}.bias'] for i in p]))


def convert(state_dict: Mapping[str, Any], model_config) -> dict:
  """Flax {'params', 'batch_stats'} (numpy float32) of `models.create_model(model_config)`.

  Args:
    state_dict: the released PyTorch network's `state_dict()`, names to numpy arrays or
      torch tensors; a `module.` prefix (DataParallel) is dropped.
    model_config: a `config.model` with arch='released' and the mixer of the network
      ('bilinear': ST-BLN, 'additive': 2s-AGCN, 'multiplicative': ST-GCN).
  Raises:
    StateDictError: the config has no PyTorch network, or the first missing,
      unexpected or mis-shaped entry of the state_dict.
  """
  cfg = model_config
  if cfg.get('arch', 'released') != 'released':
    raise StateDictError(f"model.arch={cfg.arch!r}: PyTorch checkpoints are of the "
                          f"authors' released networks; set model.arch='released'")
  arrays = normalize(state_dict)
  check(arrays, cfg)
  network, spatial = NETWORKS[cfg.mixer]
  tree = _Tree(arrays)
  tree.batch_norm('data_bn', ('data_bn',),
                  (cfg.num_persons, cfg.num_joints, cfg.in_channels))
  for i in range(cfg.num_layers):
    layer, step, out = (f'layers.layer{i + 1}', f'layers.layer{i + 1}.{spatial}',
                        (f'layer_{i + 1}',))
    mixer = out + ('mixer',)
    # Σ_p W_p: 'W' (P, C_in, C_out) and one bias per partition (P, C_out).
    tree.put('params', mixer + ('W',), np.stack(
        [_matrix(arrays[f'{step}.g_conv.{p}.weight']) for p in range(PARTITIONS)]))
    tree.put('params', mixer + ('bias',), np.stack(
        [arrays[f'{step}.g_conv.{p}.bias'] for p in range(PARTITIONS)]))
    if network == 'STBLN':
      tree.put('params', mixer + ('U',), _nodes(arrays[f'{step}.rand_graph']))  # Eq. (4)
      shortcut = f'{step}.bln_residual'
    else:
      tree.put('params', mixer + ('M',), _nodes(arrays[f'{step}.graph_attn']))  # Eqs. (1-2)
      shortcut = f'{step}.gcn_residual'
    if network == 'AGCN':  # C_p's embeddings θ_p, φ_p
      tree.partitions(f'{step}.a_conv', mixer + ('theta',))
      tree.partitions(f'{step}.b_conv', mixer + ('phi',))
    tree.batch_norm(f'{step}.bn', out + ('bn_spatial',))
    if f'{shortcut}.0.weight' in arrays:
      tree.dense(f'{shortcut}.0', out + ('residual_v', 'map'))
      tree.batch_norm(f'{shortcut}.1', out + ('residual_v', 'bn'))
    tree.conv(f'{layer}.tcn.t_conv', out + ('temporal', 'conv'))
    tree.batch_norm(f'{layer}.tcn.bn', out + ('bn_temporal',))
    if f'{layer}.residual.t_conv.weight' in arrays:
      if network == 'STBLN':  # a 9×1 convolution
        tree.conv(f'{layer}.residual.t_conv', out + ('residual_t', 'map', 'conv'))
      else:  # a strided 1×1 convolution
        tree.dense(f'{layer}.residual.t_conv', out + ('residual_t', 'map'))
      tree.batch_norm(f'{layer}.residual.bn', out + ('residual_t', 'bn'))
  tree.dense('fc', ('head',))
  _check_tree(tree.variables, cfg)
  return tree.variables


def _check_tree(variables: dict, cfg) -> None:
  """Every variable of the Flax network, with its shape, and nothing else."""
  model = models.create_model(cfg)
  expected = jax.eval_shape(lambda: models.init_variables(model, cfg, jax.random.key(0)))
  want = {jax.tree_util.keystr(k): v.shape
          for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(k): v.shape
         for k, v in jax.tree_util.tree_leaves_with_path(variables)}
  for path in sorted(want.keys() | got.keys()):
    if want.get(path) != got.get(path):
      raise StateDictError(f'the converted variables do not fit models.create_model(config)'
                            f' at {path}: {got.get(path)} converted, {want.get(path)} expected')


# ---- Reading and writing ----------------------------------------------------------

def load_state_dict(path: str) -> dict:
  """The name → array mapping stored in `path` (.npz, or anything `torch.save` wrote)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such checkpoint file')
  if path.endswith('.npz'):
    with np.load(path) as data:
      return dict(data)
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise StateDictError(
        f'{path}: reading a PyTorch file needs PyTorch (pip install torch), or save the '
        f'state_dict as .npz') from e
  loaded = torch.load(path, map_location='cpu', weights_only=True)
  for key in ('state_dict', 'model'):
    if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
      loaded = loaded[key]
  if not isinstance(loaded, dict):
    raise StateDictError(f'{path}: holds a {type(loaded).__name__}, not a state_dict')
  return loaded


def save_imported(variables: dict, config, workdir: str) -> None:
  """Writes `variables` as checkpoint step 0 of `workdir`, with the config and action names."""
  mesh = sharding.make_mesh(jax.local_devices()[:1])
  model = models.create_model(config.model)
  optimizer = train.make_optimizer(config, train.learning_rate_schedule(config, 1))
  state = train.create_train_state(model, config, optimizer, mesh)
  replicated = sharding.replicated(mesh)
  state['params'] = jax.device_put(variables['params'], replicated)
  state['batch_stats'] = jax.device_put(variables['batch_stats'], replicated)
  manager = checkpoint.make_manager(workdir, keep=config.keep_checkpoints)
  if manager.all_steps():
    raise FileExistsError(f'{checkpoint.checkpoint_dir(workdir)} already holds checkpoints '
                          f'{sorted(manager.all_steps())}; import into a new workdir')
  workdir_lib.save_config(config, workdir)
  workdir_lib.save_class_names(ntu.ACTION_NAMES[:config.model.num_classes], workdir)
  checkpoint.save(manager, state, progress={'epoch': 0, 'batch': 0, 'evaluations': []})
  manager.wait_until_finished()
  manager.close()


# ---- The command -----------------------------------------------------------------

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_string('checkpoint', None, 'PyTorch state_dict (.pt, .pth) or .npz.')
  flags.DEFINE_string('workdir', None, 'New workdir for the imported weights.')
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.checkpoint is None or FLAGS.workdir is None or FLAGS.config is None:
    raise app.UsageError('--checkpoint, --config and --workdir are required')
  config = FLAGS.config
  train.validate_config(config)
  variables = convert(load_state_dict(FLAGS.checkpoint), config.model)
  save_imported(variables, config, FLAGS.workdir)
  print(f'{FLAGS.checkpoint} → {checkpoint.checkpoint_dir(FLAGS.workdir)} (step 0, '
        f'{config.model.arch} {config.model.mixer})')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(OSError, models.ConfigError, StateDictError))
