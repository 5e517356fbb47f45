"""A tiny built dataset and config shared by the tests that start whole runs.

12 synthetic files through the `ntu_rgbd/xview` builder: 8 training examples
(cameras 2 and 3) and 4 test examples. The config file trains a 2-layer network on
16-frame clips for 2 epochs of 2 steps, checkpointing and evaluating every epoch.
"""

import os
import pathlib
import sys

import pytest

from stbln_jax.data import build
from stbln_jax.data import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 2
NUM_TEST = 4

CONFIG_FILE = '''
from configs import default


def get_config():
  config = default.get_config()
  config.data_dir = {data_dir!r}
  config.model.channels = (8, 8)
  config.model.strides = (1, 1)
  config.model.num_layers = 2
  config.num_frames = 16
  config.batch_size = 4  # 8 training examples: 2 steps per epoch
  config.eval_batch_size = 4
  config.num_epochs = 2
  config.log_every_steps = 1
  return config
'''


def write_tiny_raw(raw_dir):
  """The 12 synthetic `.skeleton` files of the tiny dataset (always the same)."""
  synthetic.write_synthetic_dataset(raw_dir, num_classes=2, subjects=(1, 2),
                                    replications=(1,), frames=(20, 30))


def build_tiny_dataset(raw_dir, data_dir):
  write_tiny_raw(raw_dir)
  return build.build_dataset('ntu_rgbd/xview', manual_dir=raw_dir, data_dir=data_dir,
                             num_workers=1, quiet=True)


@pytest.fixture(scope='session')
def tiny_config_file(tmp_path_factory):
  """Path of the tiny config file; its dataset is built (once per test session)."""
  data_dir = tmp_path_factory.mktemp('tiny_tfds')
  summary = build_tiny_dataset(tmp_path_factory.mktemp('tiny_raw'), data_dir)
  assert summary.examples == {'train': 8, 'test': NUM_TEST}, summary.format()
  path = tmp_path_factory.mktemp('tiny_config') / 'tiny.py'
  path.write_text(CONFIG_FILE.format(data_dir=str(data_dir)))
  return path


def load_config(path):
  """The config of a config file, as `main` loads it."""
  namespace = {}
  sys.path.insert(0, str(REPO))
  try:
    source = pathlib.Path(path).read_text()
    exec(compile(source, str(path), 'exec'), namespace)  # pylint: disable=exec-used
  finally:
    sys.path.remove(str(REPO))
  return namespace['get_config']()


def main_command(config_file, workdir, *flags):
  """argv of `python -m stbln_jax.main` on the tiny config."""
  return [sys.executable, '-m', 'stbln_jax.main', f'--config={config_file}',
          f'--workdir={workdir}', *flags]


def subprocess_env(num_devices=4, **extra):
  return {**os.environ, 'JAX_PLATFORMS': 'cpu',
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={num_devices}', **extra}


def damage(workdir, step):
  """Truncates every array file of checkpoint `step` to half its size."""
  state_dir = workdir / 'checkpoints' / str(step) / 'state'
  truncated = 0
  for root, _, files in os.walk(state_dir):
    if os.path.basename(root) == 'd':  # the array data (OCDBT)
      for name in files:
        path = os.path.join(root, name)
        os.truncate(path, os.path.getsize(path) // 2)
        truncated += 1
  assert truncated, f'no array files under {state_dir}'
