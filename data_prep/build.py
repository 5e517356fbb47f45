r"""Builds NTU RGB+D records from raw `.skeleton` files, without TensorFlow.

  python -m data_prep.build ntu_rgbd/xview \
      --manual_dir=/data/nturgbd_skeletons --data_dir=/data/tfds

Configs: xview, xsub (NTU-60), xsub120, xset120 (NTU-120), preprocessed
exactly as 2s-AGCN does; each also as `<config>_tracked`, with bodies followed
by tracking ID (`stbln_jax.data.preprocess`).

Flags follow `tfds build` where they apply (--data_dir, --manual_dir,
--overwrite, --num_processes); --num_processes sets the processes
parsing `.skeleton` files (`tfds build` uses it for building several datasets
at once). Several datasets may be given. Each build ends with a summary:
records per split, files excluded, ignored and skipped, and why.

With TensorFlow installed, `tfds build --imports stbln_jax.data.ntu_rgbd
ntu_rgbd/xview --manual_dir=...` builds the same records.
"""

from absl import app
from absl import flags
from absl import logging

from stbln_jax import cli
from stbln_jax.data import build

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program, so importing this module never
  # clashes with another command's flags of the same name.
  flags.DEFINE_string(
      'data_dir', None,
      'Where to place datasets (default: $TFDS_DATA_DIR or '
      '~/tensorflow_datasets).')
  flags.DEFINE_string(
      'manual_dir', None,
      'Folder searched recursively for .skeleton files (default: '
      '<data_dir>/downloads/manual).')
  flags.DEFINE_bool(
      'overwrite', False, 'Delete and rebuild a dataset that already exists.')
  flags.DEFINE_integer(
      'num_processes', None,
      'Processes parsing .skeleton files (default: all cores).', lower_bound=1)
  flags.DEFINE_bool(
      'quiet', False,
      'No progress bars or progress logs; print only the summary.')


def main(argv):
  names = argv[1:]
  if not names:
    raise app.UsageError(
        'Name the dataset(s) to build, e.g. ntu_rgbd/xview (configs: xview, '
        'xsub, xsub120, xset120, each also as <config>_tracked).')
  if FLAGS.quiet:
    logging.set_verbosity(logging.ERROR)
  for name in names:
    summary = build.build_dataset(
        name,
        manual_dir=FLAGS.manual_dir,
        data_dir=FLAGS.data_dir,
        num_workers=FLAGS.num_processes,
        overwrite=FLAGS.overwrite,
        quiet=FLAGS.quiet,
    )
    print(summary.format(), flush=True)


if __name__ == '__main__':
  _define_flags()
  # A dataset name that is not an ntu_rgbd config is a ValueError (TFDS's or ours).
  cli.run(main, input_errors=(ValueError,))
