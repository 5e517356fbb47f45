"""Training and evaluation: config checks, train state, the jitted steps and the loop.

Read top to bottom: config checks → mesh and shardings → optimizer and schedule →
train state → train and eval steps → evaluation loop → `train_and_evaluate` →
`evaluate`. `main.py` only parses flags and calls one of the last two.

Parallelism: one ('data',) mesh over all devices of all processes. Parameters,
BatchNorm statistics and optimizer state are replicated; each batch is a global
array sharded along its first axis, assembled from the batches each process loads.
Under `jax.jit`, means over the batch axis (the loss, BatchNorm statistics) are
means over the global batch, so the result does not depend on the device count.

The recipe (SPEC "Training"): SGD with Nesterov momentum 0.9, L2 weight decay 1e-4
added to the gradient before momentum as PyTorch's `SGD(weight_decay=...)` does,
applied to every parameter (BatchNorm scales and offsets and the classifier bias
included, as 2s-AGCN passes `model.parameters()` to the optimizer), learning rate
`base_learning_rate · batch_size / base_batch_size` divided by 10 at epochs 30
and 40 (counted in steps), cross-entropy, 50 epochs.
"""

import contextlib
import copy
import functools
import json
import logging as std_logging
import os
import signal
import time
from typing import Any, Callable, Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from stbln_jax import checkpoint
from stbln_jax import input_pipeline
from stbln_jax import metrics as metrics_lib
from stbln_jax import models
from stbln_jax.data import preprocess

State = dict[str, Any]
CONFIG_FILE = 'config.json'
CLASS_NAMES_FILE = 'class_names.json'


# ---- Config checks (once, at the boundary) ---------------------------------------

def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
                    num_processes: int | None = None) -> None:
  """Raises `models.ConfigError` saying what to change if `config` cannot run here."""
  models.validate_model_config(config.model)
  num_devices = jax.device_count() if num_devices is None else num_devices
  num_processes = jax.process_count() if num_processes is None else num_processes
  if config.stream not in preprocess.STREAMS:
    raise models.ConfigError(f'stream={config.stream!r} is not a stream; choose one of '
                             f'{preprocess.STREAMS}')
  for name in ('batch_size', 'eval_batch_size'):
    size = config[name]
    if size < 1 or size % num_devices:
      raise models.ConfigError(
          f'{name}={size} must be a positive multiple of the number of devices '
          f'({num_devices}): each device gets an equal share of the global batch')
    if size % num_processes:
      raise models.ConfigError(f'{name}={size} must be divisible by the number of '
                               f'processes ({num_processes})')
  if config.num_frames < 1:
    raise models.ConfigError(f'num_frames={config.num_frames} must be positive')
  if config.num_epochs < 1:
    raise models.ConfigError(f'num_epochs={config.num_epochs} must be positive')
  if not 0.0 < config.lr_decay_factor <= 1.0:
    raise models.ConfigError(f'lr_decay_factor={config.lr_decay_factor} must be in (0, 1]')
  for name in ('eval_every_epochs', 'checkpoint_every_epochs', 'keep_checkpoints',
               'log_every_steps'):
    if config[name] < 1:
      raise models.ConfigError(f'{name}={config[name]} must be at least 1')


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the run's config as JSON, so `--mode=eval` and `predict` need no --config."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
      f.write(config.to_json(indent=2, sort_keys=True))


def save_class_names(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the action names (by label) for `predict`, which needs no dataset."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CLASS_NAMES_FILE), 'w') as f:
      json.dump(input_pipeline.class_names(config), f, indent=0)


def load_class_names(workdir: str) -> list[str]:
  with open(os.path.join(workdir, CLASS_NAMES_FILE)) as f:
    return json.load(f)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config `train_and_evaluate` saved in `workdir`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} the --workdir of a training '
                            f'run? (or pass --config)')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


# ---- Mesh and shardings ----------------------------------------------------------

def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D ('data',) mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: only the step's inputs and outputs are pinned; XLA places the rest.
  return jax.make_mesh((len(devices),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def to_global(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Global arrays from this process's part of a batch (split along axis 0)."""
  sharding = batch_sharded(mesh)
  num_processes = jax.process_count()

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
        sharding, x, (x.shape[0] * num_processes,) + x.shape[1:])
  return jax.tree.map(put, batch)


# ---- Optimizer and schedule ------------------------------------------------------

def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
  """Step → learning rate: linear scaling with the batch, step decays, optional warmup."""
  peak = config.base_learning_rate * config.batch_size / config.base_batch_size
  boundaries = jnp.asarray([e * steps_per_epoch for e in config.lr_decay_epochs], jnp.int32)
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)

  def schedule(step):
    # Epoch-based decay as in PyTorch's MultiStepLR: every step of epoch e uses the
    # rate of epoch e.
    num_decays = jnp.sum(step >= boundaries)
    lr = peak * config.lr_decay_factor ** num_decays
    if warmup_steps:
      lr = lr * jnp.minimum(1.0, (step + 1) / warmup_steps)
    return lr
  return schedule


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: Callable) -> optax.GradientTransformation:
  # L2 decay on the gradient before momentum (PyTorch SGD), not decoupled (AdamW-style).
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov),
  )


# ---- Train state -----------------------------------------------------------------

def _state_initializer(model, config: ml_collections.ConfigDict,
                       optimizer: optax.GradientTransformation) -> Callable:
  def init(rng):
    variables = models.init_variables(model, config.model, rng)
    return {'step': jnp.zeros((), jnp.int32),
            'params': variables['params'],
            'batch_stats': variables['batch_stats'],
            'opt_state': optimizer.init(variables['params'])}
  return init


def create_train_state(model, config: ml_collections.ConfigDict,
                       optimizer: optax.GradientTransformation, mesh,
                       rng: jax.Array | None = None) -> State:
  """{'step', 'params', 'batch_stats', 'opt_state'}, replicated over `mesh`."""
  if rng is None:
    # The 'rbg' generator: XLA compiles threefry's initialisation graph about three
    # times slower on CPU (~10 s even for a tiny model); rbg is just as deterministic
    # on a given backend, and initialisation runs replicated.
    rng = jax.random.key(config.seed, impl='rbg')
  init = _state_initializer(model, config, optimizer)
  return jax.jit(init, out_shardings=replicated(mesh))(rng)


def abstract_train_state(model, config: ml_collections.ConfigDict,
                         optimizer: optax.GradientTransformation, mesh) -> State:
  """Shapes, dtypes and (replicated) shardings of the train state, for restoring."""
  init = _state_initializer(model, config, optimizer)
  shapes = jax.eval_shape(init, jax.random.key(0, impl='rbg'))
  return checkpoint.abstract_like(shapes, replicated(mesh))


# ---- Steps -----------------------------------------------------------------------

def _rank_of_label(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """How many classes score strictly higher than the true one (0 = top-1 correct)."""
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  return jnp.sum(logits > label_logit, axis=-1)


def train_step(state: State, batch: dict, *, model, optimizer, schedule) -> tuple[State, dict]:
  """One SGD step on a global batch; returns the new state and batch-mean metrics."""

  def loss_fn(params):
    logits, updates = model.apply({'params': params, 'batch_stats': state['batch_stats']},
                                  batch['skeleton'], train=True, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state['params'])
  updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
  new_state = {'step': state['step'] + 1,
               'params': optax.apply_updates(state['params'], updates),
               'batch_stats': batch_stats,
               'opt_state': opt_state}
  measurements = {
      'loss': loss,
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
      'learning_rate': schedule(state['step']),
  }
  return new_state, measurements


def make_train_step(model, optimizer, schedule, mesh) -> Callable:
  """`train_step` jitted on `mesh`: the state is donated, the batch is sharded."""
  return jax.jit(
      functools.partial(train_step, model=model, optimizer=optimizer, schedule=schedule),
      in_shardings=(replicated(mesh), batch_sharded(mesh)),
      out_shardings=(replicated(mesh), replicated(mesh)),
      donate_argnums=(0,))


def eval_step(variables: dict, batch: dict, *, model) -> dict:
  """Sums over the real (mask=True) examples of a padded batch, plus its logits.

  The logits, labels, indices and mask come back whole (replicated), so every
  process can write per-sample scores.
  """
  logits = model.apply(variables, batch['skeleton'], train=False)
  mask = batch['mask']
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  rank = _rank_of_label(logits, batch['label'])
  return {
      'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
      'top1_correct': jnp.sum(mask & (rank < 1)),
      'top5_correct': jnp.sum(mask & (rank < 5)),
      'count': jnp.sum(mask),
      'logits': logits,
      'label': batch['label'],
      'index': batch['index'],
      'mask': mask,
  }


def make_eval_step(model, mesh) -> Callable:
  return jax.jit(functools.partial(eval_step, model=model),
                 in_shardings=(replicated(mesh), batch_sharded(mesh)),
                 out_shardings=replicated(mesh))


# ---- Evaluation loop -------------------------------------------------------------

def run_evaluation(eval_fn: Callable, variables: dict, config: ml_collections.ConfigDict,
                   mesh, split: str) -> dict:
  """Evaluates `variables` on a whole split.

  Returns:
    {'num_examples', 'top1', 'top5', 'loss'} reduced in the step, and the per-sample
    'logits' (N, K) and 'labels' (N,) ordered by position in the split.
  """
  sums = {'loss_sum': 0.0, 'top1_correct': 0, 'top5_correct': 0, 'count': 0}
  logits, labels, indices = [], [], []
  for batch in input_pipeline.eval_batches(
      config, split, batch_size=config.eval_batch_size, process_index=jax.process_index(),
      process_count=jax.process_count()):
    out = jax.device_get(eval_fn(variables, to_global(batch, mesh)))
    for key in sums:
      sums[key] += out[key]
    keep = out['mask']
    logits.append(out['logits'][keep])
    labels.append(out['label'][keep])
    indices.append(out['index'][keep])
  order = np.argsort(np.concatenate(indices))
  count = int(sums['count'])
  if count == 0:
    raise ValueError(f'split {split!r} of {config.dataset} has no examples')
  return {
      'num_examples': count,
      'top1': float(sums['top1_correct']) / count,
      'top5': float(sums['top5_correct']) / count,
      'loss': float(sums['loss_sum']) / count,
      'logits': np.concatenate(logits)[order].astype(np.float32),
      'labels': np.concatenate(labels)[order].astype(np.int32),
  }


def write_eval_outputs(result: dict, config: ml_collections.ConfigDict, workdir: str,
                       split: str, *, step: int) -> dict:
  """Writes eval_<split>.json, confusion_<split>.png and scores_<split>.npz (process 0).

  The .npz holds, per sample in split order, its name, label and logits: the input
  of `stbln_jax.ensemble`.
  """
  summary = metrics_lib.summarize(result['logits'], result['labels'],
                                  config.model.num_classes)
  # The step's own reductions are the headline numbers; the host summary adds the
  # per-class view of the same logits.
  summary.update({k: result[k] for k in ('num_examples', 'top1', 'top5', 'loss')})
  summary.update({'split': split, 'dataset': config.dataset, 'stream': config.stream,
                  'step': int(step)})
  if jax.process_index() != 0:
    return summary
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, f'eval_{split}.json'), 'w') as f:
    # One line per entry: the confusion matrix stays one (long) line.
    f.write('{\n' + ',\n'.join(f'  {json.dumps(k)}: {json.dumps(v)}'
                               for k, v in summary.items()) + '\n}\n')
  names = input_pipeline.sample_names(config, split)
  np.savez(os.path.join(workdir, f'scores_{split}.npz'),
           names=np.asarray(names), labels=result['labels'], logits=result['logits'])
  metrics_lib.plot_confusion_matrix(
      np.asarray(summary['confusion_matrix']),
      os.path.join(workdir, f'confusion_{split}.png'),
      class_names=input_pipeline.class_names(config),
      title=f'{config.dataset} {split} ({config.stream}): top-1 {summary["top1"]:.2%}')
  return summary


# ---- Stopping on SIGTERM ---------------------------------------------------------

class StopRequest(contextlib.AbstractContextManager):
  """Turns SIGTERM into a request to checkpoint and stop at the next step.

  With several processes, SIGTERM may reach them at different steps, so the decision
  comes from JAX's preemption sync point instead (the distributed runtime listens
  for SIGTERM), which every process answers identically at the same step.
  """

  def __init__(self):
    self._requested = False
    self._previous = None
    self._multiprocess = jax.process_count() > 1

  def __enter__(self):
    if not self._multiprocess:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if not self._multiprocess:
      signal.signal(signal.SIGTERM, self._previous)
    return False

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the end of this step, then stopping.')
    self._requested = True

  def __call__(self, step: int) -> bool:
    """Whether to stop after `step` (must be called by every process at every step)."""
    if self._multiprocess:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested


# ---- Logging ---------------------------------------------------------------------

class _Writer:
  """TensorBoard scalars from process 0 (tensorboardX); a no-op elsewhere."""

  def __init__(self, logdir: str):
    self._writer = None
    if jax.process_index() == 0:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(logdir)

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self._writer is not None:
      for name, value in values.items():
        self._writer.add_scalar(name, value, step)
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def show_only_own_info_logs() -> None:
  """Console logs: warnings from every library, INFO only from this package.

  Orbax and TFDS log every checkpoint step and dataset access at INFO, which would
  bury the training progress.
  """
  own = f'{os.sep}stbln_jax{os.sep}'
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or own in record.pathname)


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# ---- Synthetic data (the demo) ---------------------------------------------------

def prepare_synthetic_data(config: ml_collections.ConfigDict,
                           workdir: str) -> ml_collections.ConfigDict:
  """Writes and builds the synthetic dataset of `config.synthetic`, unless built.

  Returns:
    `config` itself when `config.synthetic.enabled` is False; otherwise a copy
    whose unset `data_dir` is set to <workdir>/data, where the raw files
    (`synthetic_skeletons/`) and the built records go.
  """
  if not config.synthetic.enabled:
    return config
  config = copy.deepcopy(config)
  if config.data_dir is None:
    config.data_dir = os.path.join(os.path.abspath(workdir), 'data')
  try:
    input_pipeline.get_num_examples(config, config.train_split)
    return config  # already built
  except FileNotFoundError:
    pass
  if jax.process_index() == 0:
    # Imported here: only the demo needs the generator and the builder.
    from stbln_jax.data import build  # pylint: disable=g-import-not-at-top
    from stbln_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    raw_dir = os.path.join(config.data_dir, 'synthetic_skeletons')
    start = time.perf_counter()
    files = synthetic.write_synthetic_dataset(
        raw_dir, num_classes=config.synthetic.num_classes,
        subjects=tuple(range(1, config.synthetic.num_subjects + 1)),
        seed=config.synthetic.seed)
    logging.info('Wrote %d synthetic .skeleton files to %s in %.1f s.', len(files), raw_dir,
                 time.perf_counter() - start)
    summary = build.build_dataset(config.dataset, manual_dir=raw_dir,
                                  data_dir=config.data_dir, quiet=True)
    logging.info('Built %s', summary.format())
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('synthetic dataset built')
  return config


# ---- Training --------------------------------------------------------------------

def _epoch_batches(config, epoch: int, start_batch: int) -> Iterator[dict]:
  return input_pipeline.train_batches(
      config, epoch=epoch, start_batch=start_batch,
      process_index=jax.process_index(), process_count=jax.process_count())


def _every(epoch: int, period: int, num_epochs: int) -> bool:
  """True after every `period`-th epoch and after the last one (epochs 0-based)."""
  return (epoch + 1) % period == 0 or epoch + 1 == num_epochs


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from `workdir/checkpoints` if present) and evaluates.

  Returns:
    The final evaluation summary (see `write_eval_outputs`), or {} when this call
    did not reach the end of training (SIGTERM) or found it already reached.
  """
  validate_config(config)
  config = prepare_synthetic_data(config, workdir)
  steps_per_epoch = input_pipeline.steps_per_epoch(config)  # fails early if no data
  save_config(config, workdir)
  save_class_names(config, workdir)
  mesh = make_mesh()
  model = models.create_model(config.model)
  schedule = learning_rate_schedule(config, steps_per_epoch)
  optimizer = make_optimizer(config, schedule)
  manager = checkpoint.make_manager(workdir, keep=config.keep_checkpoints)
  epoch, start_batch = 0, 0
  if manager.latest_step() is not None:
    state, progress, step = checkpoint.restore(
        manager, abstract_train_state(model, config, optimizer, mesh))
    epoch, start_batch = progress['epoch'], progress['batch']
    logging.info('Resumed from step %d: epoch %d, after %d of its %d batches.', step,
                 epoch + 1, start_batch, steps_per_epoch)
  else:
    state = create_train_state(model, config, optimizer, mesh)
  num_params = sum(x.size for x in jax.tree.leaves(state['params']))
  logging.info('Model: %s mixer, %d layers, %d parameters, λ=%s.', config.model.mixer,
               config.model.num_layers, num_params, config.model.aggregate_at)

  train_fn = make_train_step(model, optimizer, schedule, mesh)
  eval_fn = make_eval_step(model, mesh)
  writer = _Writer(os.path.join(workdir, 'tensorboard'))
  total_steps = config.num_epochs * steps_per_epoch
  if config.max_train_steps is not None:
    total_steps = min(total_steps, config.max_train_steps)
  step = int(jax.device_get(state['step']))
  logging.info('Training %d steps (%d per epoch) at global batch %d on %d devices.',
               total_steps, steps_per_epoch, config.batch_size, jax.device_count())

  if step >= total_steps or epoch >= config.num_epochs:
    logging.info('Nothing to do: the checkpoint is at step %d of %d.', step, total_steps)
  summary = {}
  pending = []  # device metrics since the last log line (fetched lazily: no sync per step)
  interval_start, interval_steps = time.perf_counter(), 0
  with StopRequest() as stop_requested:
    while epoch < config.num_epochs and step < total_steps:
      batch_index, stop = start_batch, False
      for batch in _epoch_batches(config, epoch, start_batch):
        state, measurements = train_fn(state, to_global(batch, mesh))
        step += 1
        batch_index += 1
        pending.append(measurements)
        interval_steps += 1
        if step % config.log_every_steps == 0 or step == total_steps:
          values = {k: float(np.mean([m[k] for m in jax.device_get(pending)]))
                    for k in pending[0]}
          seconds = time.perf_counter() - interval_start
          values['samples_per_second'] = interval_steps * config.batch_size / seconds
          logging.info(
              'epoch %d step %d/%d: loss %.4f, accuracy %.3f, lr %.4g, %.1f samples/s, '
              'ETA %s', epoch + 1, step, total_steps, values['loss'], values['accuracy'],
              values['learning_rate'], values['samples_per_second'],
              _format_duration(seconds / interval_steps * (total_steps - step)))
          writer.scalars(step, {f'train/{k}': v for k, v in values.items()})
          pending, interval_start, interval_steps = [], time.perf_counter(), 0
        stop = stop_requested(step)
        if stop or step >= total_steps:
          break

      if batch_index < steps_per_epoch:
        if not (stop or step >= total_steps):
          raise RuntimeError(f'epoch {epoch} ended after {batch_index} batches, expected '
                             f'{steps_per_epoch}: the input pipeline and steps_per_epoch '
                             f'disagree')
        # Mid-epoch: the checkpoint says to resume at the next batch of this epoch.
        checkpoint.save(manager, state, epoch=epoch, batch=batch_index)
        logging.info('Stopped at epoch %d, batch %d (step %d); rerun the same command to '
                     'resume.', epoch + 1, batch_index, step)
        break

      last = epoch + 1 == config.num_epochs or step >= total_steps
      eval_metrics = None
      pause_start = time.perf_counter()
      # On SIGTERM, save without the periodic evaluation: the grace period is short.
      if (_every(epoch, config.eval_every_epochs, config.num_epochs) and not stop) or last:
        variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
        result = run_evaluation(eval_fn, variables, config, mesh, config.eval_split)
        eval_metrics = {k: result[k] for k in ('top1', 'top5', 'loss')}
        logging.info('epoch %d eval on %s (%d examples): top-1 %.2f%%, top-5 %.2f%%, '
                     'loss %.4f', epoch + 1, config.eval_split, result['num_examples'],
                     100 * result['top1'], 100 * result['top5'], result['loss'])
        writer.scalars(step, {f'eval/{k}': v for k, v in eval_metrics.items()})
        if last:
          summary = write_eval_outputs(result, config, workdir, config.eval_split, step=step)
          logging.info('Final: top-1 %.2f%% on the %d examples of %s/%s; reports '
                       '(eval_%s.json, confusion_%s.png, scores_%s.npz) in %s.',
                       100 * result['top1'], result['num_examples'], config.dataset,
                       config.eval_split, *[config.eval_split] * 3, workdir)
      if _every(epoch, config.checkpoint_every_epochs, config.num_epochs) or last or stop:
        checkpoint.save(manager, state, epoch=epoch + 1, batch=0, metrics=eval_metrics)
      epoch, start_batch = epoch + 1, 0
      # Throughput counts training only, not evaluation or checkpointing.
      interval_start += time.perf_counter() - pause_start
      if stop:
        logging.info('Stopped after epoch %d (step %d); rerun the same command to resume.',
                     epoch, step)
        break
  manager.wait_until_finished()
  manager.close()
  writer.close()
  return summary


# ---- Evaluation of a saved run ---------------------------------------------------

def restore_variables(config: ml_collections.ConfigDict, workdir: str, mesh,
                      step: int | None = None) -> tuple[dict, int]:
  """{'params', 'batch_stats'} of checkpoint `step` (default: latest) of a run."""
  model = models.create_model(config.model)
  # The optimizer state is part of the saved tree; restore it whole and drop it.
  optimizer = make_optimizer(config, learning_rate_schedule(config, 1))
  abstract = abstract_train_state(model, config, optimizer, mesh)
  manager = checkpoint.make_manager(workdir, keep=config.keep_checkpoints, create=False)
  state, _, step = checkpoint.restore(manager, abstract, step)
  manager.close()
  return {'params': state['params'], 'batch_stats': state['batch_stats']}, step


def evaluate(config: ml_collections.ConfigDict, workdir: str, *,
             checkpoint_step: int | None = None, split: str | None = None) -> dict:
  """Evaluates a checkpoint on a whole split and writes its reports into `workdir`."""
  validate_config(config)
  split = config.eval_split if split is None else split
  mesh = make_mesh()
  variables, step = restore_variables(config, workdir, mesh, checkpoint_step)
  eval_fn = make_eval_step(models.create_model(config.model), mesh)
  result = run_evaluation(eval_fn, variables, config, mesh, split)
  summary = write_eval_outputs(result, config, workdir, split, step=step)
  logging.info('step %d on %s/%s (%d examples): top-1 %.2f%%, top-5 %.2f%%, loss %.4f',
               step, config.dataset, split, summary['num_examples'], 100 * summary['top1'],
               100 * summary['top5'], summary['loss'])
  return summary
