r"""Top-5 actions of raw samples, with a trained workdir.

  python -m stbln_jax.predict --workdir=/tmp/cv_bilinear S001C001P001R001A011.skeleton ...
  python -m stbln_jax.predict --workdir=/tmp/coco --annotations=clips.pkl [FRAME_DIR ...]

A run on NTU records takes `.skeleton` files, which go through the builder's
preprocessing (`preprocess_skeleton`); a run on `pose_annotations` records takes
an annotation file and the frame_dirs to classify (default: all of it), each
converted as the builder converts it (`annotations.to_sample`). Then every sample
is made a model input exactly as evaluation makes one (`input_pipeline.Transform`:
the run's temporal sampling, stream and test clips, whose probabilities are
averaged) and classified by the workdir's checkpoint (latest unless
--checkpoint_step names a step or 'best'). The config (with the layout, persons and
preprocessing of the run's dataset) and class names come from the workdir. A sample
that cannot be read is reported by name and the others go on; the exit status is
1 if any failed.
"""

import sys
from typing import Sequence, TextIO

from absl import app
from absl import flags
import jax
import numpy as np

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import evaluate
from stbln_jax import input_pipeline
from stbln_jax import metrics
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import annotations as annotations_lib
from stbln_jax.data import build
from stbln_jax.data import pose_annotations
from stbln_jax.data import preprocess

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_string('workdir', None, 'Workdir of a training run.', required=True)
  flags.DEFINE_string('checkpoint_step', None,
                      'The checkpoint to use. ' + checkpoint.STEP_HELP)
  flags.DEFINE_integer('top_k', 5, 'How many actions to print per sample.',
                       lower_bound=1)
  flags.DEFINE_string('annotations', None,
                      'A PYSKL/MMAction2 annotation file (runs on pose_annotations '
                      'records); the arguments name its frame_dirs (default: all).')


def transform_of(config) -> input_pipeline.Transform:
  """How evaluation made the run's model inputs from its records."""
  return input_pipeline.Transform.from_config(
      config, layout=models.layout_of(config.model),
      channels=build.channels_of(config.dataset))


def preprocessing_of(config) -> str | None:
  """How the run's records were made from raw samples (a run from before
  `config.preprocessing`: its dataset name's)."""
  return config.get('preprocessing') or build.preprocessing_of(config.dataset)


def _error(e: Exception, where: str) -> str:
  message = str(e) if where in str(e) else f'{where}: {e}'
  return f'{type(e).__name__}: {message}'


def skeleton_records(paths: Sequence[str], config):
  """(path, record or None, error or None) of each `.skeleton` file."""
  preprocessing = preprocessing_of(config)
  for path in paths:
    try:
      yield path, preprocess.preprocess_skeleton(path, preprocessing), None
    except (OSError, ValueError) as e:
      # Unreadable, malformed (SkeletonFormatError) or without a body: say which file
      # and why, and go on with the rest.
      yield path, None, _error(e, path)


def annotation_records(path: str, frame_dirs: Sequence[str], config):
  """(frame_dir, record or None, error or None) of the named annotations of a
  file (all of them when `frame_dirs` is empty)."""
  builder_config = build.builder_config(config.dataset)
  if not isinstance(builder_config, pose_annotations.PoseAnnotationsConfig):
    raise ValueError(f'--annotations: the run was trained on {config.dataset}, not on '
                     'pose_annotations records; give it .skeleton files')
  preprocessing = preprocessing_of(config)
  normalization = (annotations_lib.Normalization.from_spec(preprocessing)
                   if preprocessing else None)
  data = annotations_lib.load_annotation_file(path)
  for name, annotation in annotations_lib.find_annotations(data, frame_dirs):
    if annotation is None:
      yield name, None, f'{path}: no annotation has frame_dir {name!r}'
      continue
    try:
      yield name, annotations_lib.to_sample(
          annotation, models.layout_of(config.model), builder_config.kind,
          config.model.num_persons, normalization=normalization), None
    except annotations_lib.AnnotationError as e:
      yield name, None, _error(e, name)


def load_inputs(paths: Sequence[str], config) -> tuple[np.ndarray, list[str], list[str]]:
  """`inputs_of` the `.skeleton` files `paths`."""
  return inputs_of(skeleton_records(paths, config), config)


def inputs_of(records, config) -> tuple[np.ndarray, list[str], list[str]]:
  """Model inputs of the readable samples and an error message for each other one.

  Args:
    records: (name, record (T, M, V, C) or None, error or None) triples.

  Returns:
    (inputs (N, T, M, V, C) or (N, K, T, M, V, C) with K test clips, float32;
     the N readable names; error messages).
  """
  transform = transform_of(config)
  samples, good, errors = [], [], []
  for name, record, error in records:
    if error is not None:
      errors.append(error)
      continue
    samples.append(transform.eval(np.asarray(record, np.float32)))
    good.append(name)
  if not samples:
    return np.zeros((0,), np.float32), good, errors
  # Motion streams are taken from the sampled batch, as the input pipeline does.
  return transform.motion(np.stack(samples).astype(np.float32)), good, errors


def _probabilities(model, variables, inputs: np.ndarray) -> np.ndarray:
  """Class probabilities (N, K): of the one input, or the clips' mean."""
  def forward(v, x):
    if x.ndim == 6:
      n, k = x.shape[:2]
      logits = model.apply(v, x.reshape((n * k,) + x.shape[2:]), train=False)
      return evaluate.average_clips(logits.reshape(n, k, -1))
    return model.apply(v, x, train=False)
  return metrics.softmax(np.asarray(jax.jit(forward)(variables, inputs)))


def run(workdir: str, paths: Sequence[str], *, annotations: str | None = None,
        top_k: int = 5, checkpoint_step: int | str | None = None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
  """Prints the top-k actions of each sample; returns the number that failed.

  `paths` are `.skeleton` files or, with `annotations`, frame_dirs of that file.
  """
  config = workdir_lib.load_config(workdir)
  class_names = workdir_lib.load_class_names(workdir)
  models.check_class_names(config.model, class_names, workdir)
  if top_k > len(class_names):
    raise cli.InputError(f'--top_k={top_k}, but the run knows {len(class_names)} classes; '
                         f'ask for at most {len(class_names)}')
  records = (annotation_records(annotations, paths, config) if annotations
             else skeleton_records(paths, config))
  inputs, good, errors = inputs_of(records, config)
  for message in errors:
    print(f'error: {message}', file=err)
  if not good:
    return len(errors)

  device = sharding.replicated(sharding.make_mesh(jax.local_devices()[:1]))
  variables, _, step = checkpoint.restore_variables(workdir, device, checkpoint_step)
  probabilities = _probabilities(models.create_model(config.model), variables, inputs)
  width = max(len(name) for name in class_names)
  for path, p in zip(good, probabilities):
    print(f'{path}  (step {step}, {config.stream} stream)', file=out)
    for rank, c in enumerate(np.argsort(-p)[:top_k], start=1):
      print(f'  {rank}. {class_names[c]:<{width}}  {p[c]:.4f}', file=out)
  return len(errors)


def main(argv):
  if len(argv) < 2 and not FLAGS.annotations:
    raise app.UsageError('name one or more .skeleton files, or give --annotations')
  cli.show_only_own_info_logs()
  failed = run(FLAGS.workdir, argv[1:], annotations=FLAGS.annotations,
               top_k=FLAGS.top_k, checkpoint_step=FLAGS.checkpoint_step)
  return 1 if failed else 0


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(models.ConfigError, checkpoint.CheckpointError))
