r"""Imports a PyTorch checkpoint of the authors' released networks into a workdir.

  python -m stbln_jax.import_torch --checkpoint=stbln_cv_joint.pt --config=configs/cv.py \
      --workdir=/tmp/cv_stbln_torch
  python -m stbln_jax.main --mode=eval --workdir=/tmp/cv_stbln_torch
  python -m stbln_jax.predict --workdir=/tmp/cv_stbln_torch S001C001P001R001A011.skeleton

The checkpoint is a `state_dict` of the authors' ST-BLN, 2s-AGCN or ST-GCN (or OpenDR's)
saved with `torch.save` (a dict holding it under 'state_dict' or 'model' also works) or
an `.npz` of the same names (no PyTorch needed then). The config says which network it
is (`--config.model.mixer=additive` for 2s-AGCN, `multiplicative` for ST-GCN) and must
be the released architecture. The workdir receives the config, the action names and
the weights as checkpoint step 0 (fresh optimizer state): evaluation and prediction
read it like a trained run's, and training in it starts from these weights.
"""

import os

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import models
from stbln_jax import torch_import
from stbln_jax import sharding
from stbln_jax import train
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import ntu

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_string('checkpoint', None, 'PyTorch state_dict (.pt, .pth) or .npz.')
  flags.DEFINE_string('workdir', None, 'New workdir for the imported weights.')
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  lock_config=True)


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
    raise torch_import.CheckpointError(
        f'{path}: reading a PyTorch file needs PyTorch (pip install torch), or save the '
        f'state_dict as .npz') from e
  loaded = torch.load(path, map_location='cpu', weights_only=True)
  for key in ('state_dict', 'model'):
    if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
      loaded = loaded[key]
  if not isinstance(loaded, dict):
    raise torch_import.CheckpointError(f'{path}: holds a {type(loaded).__name__}, not a '
                                       f'state_dict')
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.checkpoint is None or FLAGS.workdir is None or FLAGS.config is None:
    raise app.UsageError('--checkpoint, --config and --workdir are required')
  config = FLAGS.config
  train.validate_config(config)
  variables = torch_import.convert(load_state_dict(FLAGS.checkpoint), config.model)
  save_imported(variables, config, FLAGS.workdir)
  print(f'{FLAGS.checkpoint} → {checkpoint.checkpoint_dir(FLAGS.workdir)} (step 0, '
        f'{config.model.arch} {config.model.mixer})')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(OSError, models.ConfigError, torch_import.CheckpointError))
