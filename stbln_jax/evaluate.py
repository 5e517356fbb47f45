"""Evaluation: the eval step, a whole split through it, and the reports.

Every example counts once: the last batch of a split is padded and its padding
masked out inside the step, which returns sums over the real examples and, for the
per-sample reports, the logits, labels, positions and names of the whole global
batch (replicated, so any process could write them; process 0 does).

With several test clips per sample (`config.num_test_clips`, 'uniform' sampling) the
step averages the clips' class probabilities, as PYSKL's `average_clips='prob'` (its
default): a sample's scores are then log p̄, the log of that mean, so its top-1,
top-5 and cross-entropy are those of p̄, and softmax(scores) = p̄ for score fusion.

The authors report the best of their per-epoch evaluations; a run's reports give
that best epoch next to the final checkpoint's own numbers.
"""

import copy
import functools
import os
from typing import Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stbln_jax import checkpoint
from stbln_jax import input_pipeline
from stbln_jax import metrics as metrics_lib
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import layouts
from stbln_jax.data import preprocess

# What each entry of a run's list of evaluations holds.
EVALUATION_KEYS = ('epoch', 'step', 'top1', 'top5', 'mean_class_accuracy', 'loss')
# What the step reduces and a host summary repeats.
_RESULT_KEYS = ('top1', 'top5', 'mean_class_accuracy', 'loss')


# ---- Config checks ---------------------------------------------------------------

def check_global_batch(name: str, size: int, num_devices: int, num_processes: int) -> None:
  """A global batch splits evenly over devices and processes, or ConfigError."""
  if size < 1 or size % num_devices:
    raise models.ConfigError(
        f'{name}={size} must be a positive multiple of the number of devices '
        f'({num_devices}): each device gets an equal share of the global batch')
  if size % num_processes:
    raise models.ConfigError(f'{name}={size} must be divisible by the number of '
                             f'processes ({num_processes})')


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
                    num_processes: int | None = None) -> None:
  """Raises `models.ConfigError` saying what to change if evaluation cannot run here."""
  models.validate_model_config(config.model)
  if config.stream not in preprocess.STREAMS:
    raise models.ConfigError(f'stream={config.stream!r} is not a stream; choose one of '
                             f'{preprocess.STREAMS}')
  if config.num_frames < 1:
    raise models.ConfigError(f'num_frames={config.num_frames} must be positive')
  _check_inputs(config)
  check_global_batch('eval_batch_size', config.eval_batch_size,
                     jax.device_count() if num_devices is None else num_devices,
                     jax.process_count() if num_processes is None else num_processes)


def _check_inputs(config: ml_collections.ConfigDict) -> None:
  """The normalisation and temporal sampling fields (`input_pipeline.Transform`), or
  ConfigError."""
  sampling = config.get('temporal_sampling', 'pad')
  if sampling not in input_pipeline.SAMPLINGS:
    raise models.ConfigError(f'temporal_sampling={sampling!r} is not a sampling; choose '
                             f'one of {input_pipeline.SAMPLINGS}')
  interval = tuple(config.get('crop_interval', (0.5, 1.0)))
  if len(interval) != 2 or not 0.0 < interval[0] <= interval[1] <= 1.0:
    raise models.ConfigError(f'crop_interval={interval} must be two fractions (low, high) '
                             f'with 0 < low <= high <= 1')
  test_crop = config.get('test_crop', 0.95)
  if not 0.0 < test_crop <= 1.0:
    raise models.ConfigError(f'test_crop={test_crop} must be a fraction in (0, 1]')
  min_frames = config.get('crop_min_frames', 1)
  if min_frames < 1:
    raise models.ConfigError(f'crop_min_frames={min_frames} must be at least 1')
  center = config.get('center_joint')
  if center is not None and not 0 <= center < config.model.num_joints:
    raise models.ConfigError(f'center_joint={center} must be a joint of the '
                             f'{config.model.num_joints} (0-based) or None')
  normalization = config.get('normalization', 'none')
  if normalization not in preprocess.NORMALIZATIONS:
    raise models.ConfigError(f'normalization={normalization!r} must be one of '
                             f'{preprocess.NORMALIZATIONS}')
  clips = config.get('num_test_clips', 1)
  if clips < 1:
    raise models.ConfigError(f'num_test_clips={clips} must be at least 1')
  if clips > 1 and sampling != 'uniform':
    raise models.ConfigError(f"num_test_clips={clips} needs temporal_sampling='uniform' "
                             f'(it is {sampling!r}); set num_test_clips=1 for the others')


# ---- The config and the dataset --------------------------------------------------

def dataset_mismatches(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset,
                       splits: Sequence[str] = ('eval_split',)) -> list[str]:
  """Everything `config` sets that contradicts `dataset`, one phrase each: the fields it
  decides (`models.DATASET_FIELDS`, `preprocessing`) and the split fields `splits`."""
  model, problems = config.model, []
  m, v, c = dataset.sample_shape
  for name, value, what in (
      ('num_classes', len(dataset.class_names), f'it has {len(dataset.class_names)} classes'),
      ('num_persons', m, f'its samples hold {m} person{"s" * (m != 1)}'),
      ('num_joints', v, f'its skeletons have {v} joints'),
      ('in_channels', c, f'its samples have {c} channels ({dataset.channels})')):
    if model.get(name) is not None and model[name] != value:
      problems.append(f'model.{name}={model[name]}, but {what}')
  if model.get('layout') is not None or model.get('custom_layout'):
    layout = models.layout_of(model)
    if layout != dataset.layout:
      other = (' (another layout of that name)' if layout.name == dataset.layout.name
               else '')
      problems.append(f'model.layout={layout.name!r}, but its skeletons are '
                      f'{dataset.layout.name!r}{other}')
  preprocessing = config.get('preprocessing')
  if preprocessing is not None and preprocessing != dataset.preprocessing:
    problems.append(f'preprocessing={preprocessing!r}, but its records were made with '
                    f'{dataset.preprocessing!r}')
  for name in splits:
    if config[name] not in dataset.split_sizes:
      problems.append(f'{name}={config[name]!r} is not one of its splits '
                      f'{sorted(dataset.split_sizes)}')
  return problems


def fit_to_dataset(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset, *,
                   splits: Sequence[str] = ('eval_split',),
                   problems: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """A copy of `config` whose unset dataset fields are the dataset's.

  Raises:
    models.ConfigError: one line with every `dataset_mismatches` (and `problems`).
  """
  problems = dataset_mismatches(config, dataset, splits) + list(problems)
  if problems:
    raise models.ConfigError(
        f'the config does not fit dataset {dataset.name}: {"; ".join(problems)}. Leave '
        f'the model fields unset to take the dataset\'s (as configs/annotations.py does) '
        f'or set them to its values')
  config = copy.deepcopy(config)
  m, v, c = dataset.sample_shape
  name, custom = layouts.custom_fields(dataset.layout)
  with config.unlocked():
    for field, value in (('num_classes', len(dataset.class_names)), ('layout', name),
                         ('num_persons', m), ('num_joints', v), ('in_channels', c)):
      if config.model.get(field) is None:
        config.model[field] = value
    config.model.custom_layout = custom
    if config.get('preprocessing') is None:
      config.preprocessing = dataset.preprocessing
  return config


# ---- The step --------------------------------------------------------------------

def _rank_of_label(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """How many classes score strictly higher than the true one (0 = top-1 correct)."""
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  return jnp.sum(logits > label_logit, axis=-1)


def average_clips(logits: jax.Array) -> jax.Array:
  """(B, K, classes) clip logits -> (B, classes) log of the clips' mean probabilities."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(logits.shape[1])


def eval_step(variables: dict, batch: dict, *, model) -> dict:
  """Sums over the real (mask=True) examples of a padded batch, plus its logits
  (`average_clips` of the K clips when the skeletons are (B, K, T, M, V, C))."""
  x = batch['skeleton']
  if x.ndim == 6:
    b, k = x.shape[:2]
    logits = model.apply(variables, x.reshape((b * k,) + x.shape[2:]), train=False)
    logits = average_clips(logits.reshape(b, k, -1))
  else:
    logits = model.apply(variables, x, train=False)
  mask = batch['mask']
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  rank = _rank_of_label(logits, batch['label'])
  return {
      'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
      'top1_correct': jnp.sum(mask & (rank < 1)),
      'top5_correct': jnp.sum(mask & (rank < 5)),
      'count': jnp.sum(mask),
      'logits': logits,
      **{k: batch[k] for k in ('label', 'index', 'mask', 'name')},
  }


def make_eval_step(model, mesh) -> Callable:
  return jax.jit(functools.partial(eval_step, model=model),
                 in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                 out_shardings=sharding.replicated(mesh))


# ---- A whole split ---------------------------------------------------------------

def evaluate_split(eval_fn: Callable, variables: dict, config: ml_collections.ConfigDict,
                   mesh, split: str, dataset: input_pipeline.Dataset) -> dict:
  """Evaluates `variables` on the whole of `split`.

  Returns:
    {'num_examples', 'top1', 'top5', 'loss'} reduced in the step,
    'mean_class_accuracy' of the gathered scores, and per sample, ordered by
    position in the split: 'logits' (N, classes), 'labels' (N,), 'names'.
  """
  sums = {'loss_sum': 0.0, 'top1_correct': 0, 'top5_correct': 0, 'count': 0}
  kept = {'logits': [], 'label': [], 'index': [], 'name': []}
  for batch in input_pipeline.eval_batches(
      config, split, batch_size=config.eval_batch_size, process_index=jax.process_index(),
      process_count=jax.process_count(), dataset=dataset):
    out = jax.device_get(eval_fn(variables, sharding.to_global(batch, mesh)))
    for key in sums:
      sums[key] += out[key]
    for key in kept:
      kept[key].append(out[key][out['mask']])
  count = int(sums['count'])
  if count == 0:
    raise ValueError(f'split {split!r} of {config.dataset} has no examples')
  kept = {k: np.concatenate(v) for k, v in kept.items()}
  order = np.argsort(kept['index'])
  logits = kept['logits'][order].astype(np.float32)
  labels = kept['label'][order].astype(np.int32)
  cm = metrics_lib.confusion_matrix(labels, logits.argmax(axis=-1), logits.shape[-1])
  return {
      'num_examples': count,
      'top1': float(sums['top1_correct']) / count,
      'top5': float(sums['top5_correct']) / count,
      'mean_class_accuracy': metrics_lib.mean_class_accuracy(cm),
      'loss': float(sums['loss_sum']) / count,
      'logits': logits,
      'labels': labels,
      'names': input_pipeline.decode_names(kept['name'][order]),
  }


# ---- Reports ---------------------------------------------------------------------

def epochs_done(step: int, steps_per_epoch: int) -> int | float:
  """Epochs a step count makes: an int at an epoch's end, else to two decimals."""
  epochs, rest = divmod(step, steps_per_epoch)
  return epochs if rest == 0 else round(step / steps_per_epoch, 2)


def evaluation_entry(result: dict, *, epoch, step: int) -> dict:
  """One entry of a run's list of evaluations (`EVALUATION_KEYS`)."""
  return {'epoch': epoch, 'step': int(step), **{k: float(result[k]) for k in _RESULT_KEYS}}


def best_evaluation(evaluations: Sequence[dict]) -> dict | None:
  """The evaluation with the highest top-1 (the earliest of ties); None if none."""
  best = None
  for entry in evaluations:
    if best is None or entry['top1'] > best['top1']:
      best = entry
  return best


def write_reports(result: dict, config: ml_collections.ConfigDict, workdir: str,
                  split: str, dataset: input_pipeline.Dataset, *, step: int, epoch,
                  evaluations: Sequence[dict] = ()) -> dict:
  """Writes eval_<split>.json, confusion_<split>.png and scores_<split>.npz (process 0).

  The summary's top-level numbers are those of the evaluated checkpoint (at `step`,
  `epoch`); 'best_epoch' is the best of the run's per-epoch `evaluations` of this
  split up to it, and 'evaluations' lists them all.
  """
  summary = metrics_lib.summarize(result['logits'], result['labels'],
                                  config.model.num_classes)
  # The step's own reductions are the headline numbers; the host summary adds the
  # per-class view of the same logits.
  summary.update({k: result[k] for k in ('num_examples', *_RESULT_KEYS)})
  summary.update({'split': split, 'dataset': config.dataset, 'stream': config.stream,
                  'step': int(step), 'epoch': epoch})
  if evaluations:
    summary['best_epoch'] = best_evaluation(evaluations)
    summary['evaluations'] = list(evaluations)
  workdir_lib.write_json(os.path.join(workdir, f'eval_{split}.json'), summary)
  workdir_lib.save_scores(workdir, split, names=result['names'],
                          labels=result['labels'], logits=result['logits'])
  if jax.process_index() == 0:
    metrics_lib.plot_confusion_matrix(
        np.asarray(summary['confusion_matrix']),
        os.path.join(workdir, f'confusion_{split}.png'), class_names=dataset.class_names,
        title=f'{config.dataset} {split} ({config.stream}): top-1 {summary["top1"]:.2%}')
  return summary


def describe(summary: dict) -> str:
  """The checkpoint's top-1 and, if known, the best epoch's: for the log."""
  text = (f'top-1 {100 * summary["top1"]:.2f}% on the {summary["num_examples"]} examples '
          f'of {summary["dataset"]}/{summary["split"]} (epoch {summary["epoch"]}, step '
          f'{summary["step"]})')
  best = summary.get('best_epoch')
  if best is not None:
    text += (f"; best of the run's {len(summary['evaluations'])} evaluations: top-1 "
             f'{100 * best["top1"]:.2f}% at epoch {best["epoch"]}')
  return text


# ---- A saved run -----------------------------------------------------------------

def evaluate(config: ml_collections.ConfigDict, workdir: str, *,
             checkpoint_step: int | str | None = None, split: str | None = None) -> dict:
  """Evaluates a checkpoint (default: latest; 'best': the best evaluation's) on a whole
  split; writes its reports."""
  validate_config(config)
  split = config.eval_split if split is None else split
  dataset = input_pipeline.open_dataset(config)
  problems = ([] if split in dataset.split_sizes else
              [f'split {split!r} is not one of its splits {sorted(dataset.split_sizes)}'])
  config = fit_to_dataset(config, dataset, splits=(), problems=problems)
  mesh = sharding.make_mesh()
  variables, progress, step = checkpoint.restore_variables(
      workdir, sharding.replicated(mesh), checkpoint_step)
  eval_fn = make_eval_step(models.create_model(config.model), mesh)
  result = evaluate_split(eval_fn, variables, config, mesh, split, dataset)
  steps_per_epoch = (dataset.steps_per_epoch(config.train_split, config.batch_size,
                                             config.get('repeat', 1))
                     if config.batch_size > 0 else 0)
  # The run's evaluations are of its eval_split; another split has only this one.
  evaluations = progress.get('evaluations', []) if split == config.eval_split else []
  summary = write_reports(result, config, workdir, split, dataset, step=step,
                          epoch=epochs_done(step, max(steps_per_epoch, 1)),
                          evaluations=evaluations)
  logging.info('Checkpoint: %s; top-5 %.2f%%, mean class accuracy %.2f%%, loss %.4f.',
               describe(summary), 100 * summary['top5'],
               100 * summary['mean_class_accuracy'], summary['loss'])
  return summary
