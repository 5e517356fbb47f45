r"""Trains or evaluates a network on a built dataset of skeletons or keypoints.

  python -m stbln_jax.main --config=configs/cv.py --workdir=/tmp/cv_bilinear \
      --config.model.mixer=bilinear --config.model.aggregate_at=6
  python -m stbln_jax.main --mode=eval --workdir=/tmp/cv_bilinear

Rerunning a training command resumes from the workdir's last readable checkpoint.
Evaluation reads the config saved in the workdir unless --config is given. With
--multihost, one such process runs per host (launch/*: SLURM, TPU pods, several
processes on one machine):

  python -m stbln_jax.main --multihost --coordinator_address=10.0.0.1:12355 \
      --num_processes=2 --process_id=0 --config=configs/cv.py --workdir=/shared/cv
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import evaluate
from stbln_jax import input_pipeline
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import train
from stbln_jax import workdir as workdir_lib

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_string('workdir', None,
                      'Directory for checkpoints, summaries and reports.',
                      required=True)
  flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                    'train (and evaluate), or evaluate a checkpoint of the workdir.')
  flags.DEFINE_string('checkpoint_step', None,
                      'eval: the checkpoint to evaluate. ' + checkpoint.STEP_HELP)
  flags.DEFINE_string('split', None,
                      'eval: the split to evaluate (default: config.eval_split).')
  flags.DEFINE_bool(
      'multihost', False, 'Join a multi-process run first (jax.distributed.initialize): TPU '
      'pod slices, SLURM and other clusters JAX detects, or the three flags below.')
  flags.DEFINE_string(
      'coordinator_address', None, '--multihost: host:port of process 0 (default: '
      'JAX_COORDINATOR_ADDRESS, else detected from the cluster).')
  flags.DEFINE_integer(
      'num_processes', None, '--multihost: how many processes (default: JAX_NUM_PROCESSES, '
      'else detected).')
  flags.DEFINE_integer(
      'process_id', None, '--multihost: this process, 0 to num_processes - 1 (default: '
      'JAX_PROCESS_ID, else detected).')
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.show_only_own_info_logs()
  if FLAGS.multihost:
    try:
      sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                      FLAGS.process_id)
    except ValueError as e:
      raise cli.InputError(f'--multihost: {e}') from e
  # The config is checked before anything is logged: an error is then the only line.
  if FLAGS.mode == 'train':
    if FLAGS.config is None:
      raise cli.InputError('training needs --config (e.g. --config=configs/cv.py)')
    config = FLAGS.config
    train.validate_config(config)
  else:
    config = FLAGS.config or workdir_lib.load_config(FLAGS.workdir)
    evaluate.validate_config(config)
  if FLAGS.mode == 'eval' or not config.synthetic.enabled:  # the demo builds its own
    with cli.quiet_logs():  # TFDS warns about a missing dataset before we say it
      dataset = input_pipeline.open_dataset(config)
    if FLAGS.mode == 'train':  # every mismatch with the dataset, in one line
      train.fit_to_dataset(config, dataset)
  logging.info('JAX process %d of %d; %d local of %d devices: %s', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.local_devices())
  if FLAGS.mode == 'train':
    train.train_and_evaluate(config, FLAGS.workdir)
  else:
    evaluate.evaluate(config, FLAGS.workdir, checkpoint_step=FLAGS.checkpoint_step,
                      split=FLAGS.split)


if __name__ == '__main__':
  _define_flags()
  jax.config.config_with_absl()
  cli.run(main, input_errors=(models.ConfigError, checkpoint.CheckpointError))
