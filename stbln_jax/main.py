r"""Trains or evaluates a network on NTU RGB+D skeletons.

  python -m stbln_jax.main --config=configs/cv.py --workdir=/tmp/cv_bilinear \
      --config.model.mixer=bilinear --config.model.aggregate_at=6
  python -m stbln_jax.main --mode=eval --workdir=/tmp/cv_bilinear

Rerunning a training command resumes from the workdir's last checkpoint. Evaluation
reads the config saved in the workdir unless --config is given.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from stbln_jax import hostmem
from stbln_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and reports.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                  'train (and evaluate), or evaluate a checkpoint of the workdir.')
flags.DEFINE_integer('checkpoint_step', None, 'eval: the step to evaluate (default: latest).')
flags.DEFINE_string('split', None, 'eval: the split to evaluate (default: config.eval_split).')
flags.DEFINE_bool('multihost', False,
                  'Call jax.distributed.initialize() first (several processes: TPU pod '
                  'slices, SLURM or other clusters JAX detects).')
config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                lock_config=True)
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  hostmem.retain_freed_memory()
  train.show_only_own_info_logs()
  if FLAGS.multihost:
    jax.distributed.initialize()
  logging.info('JAX process %d of %d; %d local of %d devices: %s', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.local_devices())

  if FLAGS.mode == 'train':
    if FLAGS.config is None:
      raise app.UsageError('training needs --config (e.g. --config=configs/cv.py)')
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  else:
    config = FLAGS.config or train.load_config(FLAGS.workdir)
    train.evaluate(config, FLAGS.workdir, checkpoint_step=FLAGS.checkpoint_step,
                   split=FLAGS.split)


if __name__ == '__main__':
  jax.config.config_with_absl()
  app.run(main)
