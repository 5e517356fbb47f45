r"""Top-5 actions of raw NTU `.skeleton` files, with a trained workdir.

  python -m stbln_jax.predict --workdir=/tmp/cv_bilinear S001C001P001R001A011.skeleton ...

Each file goes through the builder's preprocessing (`preprocess_skeleton`), is
repeat-padded or cut to the run's `num_frames` and turned into the run's stream,
exactly as the input pipeline does, then classified by the workdir's checkpoint
(latest unless --checkpoint_step). The config and action names come from the
workdir. A file that cannot be read is reported by name and the others go on; the
exit status is 1 if any failed.
"""

import sys
from typing import Sequence, TextIO

from absl import app
from absl import flags
import jax
import numpy as np

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import metrics
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import ntu_rgbd
from stbln_jax.data import preprocess

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_string('workdir', None, 'Workdir of a training run.', required=True)
  flags.DEFINE_integer('checkpoint_step', None,
                       'Checkpoint to use (default: latest).')
  flags.DEFINE_integer('top_k', 5, 'How many actions to print per file.',
                       lower_bound=1)


def preprocessing_of(dataset: str) -> str:
  """The preprocessing the builder applied to `dataset` ('ntu_rgbd/<config>[:version]')."""
  return ntu_rgbd.get_config(dataset.split('/')[-1].split(':')[0]).preprocessing


def load_inputs(paths: Sequence[str], config) -> tuple[np.ndarray, list[str], list[str]]:
  """Model inputs of the readable files and an error message for each other one.

  Returns:
    (inputs (N, T, M, V, C) float32, the N readable paths, error messages).
  """
  samples, good, errors = [], [], []
  preprocessing = preprocessing_of(config.dataset)
  for path in paths:
    try:
      x = preprocess.pad_or_crop(preprocess.preprocess_skeleton(path, preprocessing),
                                 config.num_frames)
    except (OSError, ValueError) as e:
      # Unreadable, malformed (SkeletonFormatError) or without a body: say which file
      # and why, and go on with the rest.
      message = str(e) if path in str(e) else f'{path}: {e}'
      errors.append(f'{type(e).__name__}: {message}')
      continue
    samples.append(x)
    good.append(path)
  if not samples:
    return np.zeros((0,), np.float32), good, errors
  # Streams are taken from the padded batch, as the input pipeline does.
  batch = preprocess.select_stream(np.stack(samples).astype(np.float32), config.stream)
  return batch, good, errors


def run(workdir: str, paths: Sequence[str], *, top_k: int = 5,
        checkpoint_step: int | None = None, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> int:
  """Prints the top-k actions of each file; returns the number of files that failed."""
  config = workdir_lib.load_config(workdir)
  class_names = workdir_lib.load_class_names(workdir)
  inputs, good, errors = load_inputs(paths, config)
  for message in errors:
    print(f'error: {message}', file=err)
  if not good:
    return len(errors)

  device = sharding.replicated(sharding.make_mesh(jax.local_devices()[:1]))
  variables, _, step = checkpoint.restore_variables(workdir, device, checkpoint_step)
  model = models.create_model(config.model)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, inputs)
  probabilities = metrics.softmax(np.asarray(logits))
  width = max(len(name) for name in class_names)
  for path, p in zip(good, probabilities):
    print(f'{path}  (step {step}, {config.stream} stream)', file=out)
    for rank, c in enumerate(np.argsort(-p)[:top_k], start=1):
      print(f'  {rank}. {class_names[c]:<{width}}  {p[c]:.4f}', file=out)
  return len(errors)


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('name one or more .skeleton files')
  cli.show_only_own_info_logs()
  failed = run(FLAGS.workdir, argv[1:], top_k=FLAGS.top_k,
               checkpoint_step=FLAGS.checkpoint_step)
  return 1 if failed else 0


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
