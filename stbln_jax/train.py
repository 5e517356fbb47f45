"""Training: config checks, optimizer and schedule, train state, the step, the loop.

Read top to bottom: config checks → optimizer and schedule → train state → train
step → stopping on SIGTERM → logging → `train_and_evaluate`. Evaluation is in
`evaluate`, the mesh in `sharding`, the workdir's files in `workdir` and
`checkpoint`; `main.py` only parses flags.

The loop is flat: global step s runs batch s % steps_per_epoch of epoch
s // steps_per_epoch (`input_pipeline.train_stream`), so a run resumed at any step
sees the batches and learning rates an uninterrupted run would have.

The paper's recipe: SGD with Nesterov momentum 0.9, L2 weight decay 1e-4
added to the gradient before momentum as PyTorch's `SGD(weight_decay=...)` does,
applied to every parameter (BatchNorm scales and offsets and the classifier bias
included, as 2s-AGCN passes `model.parameters()` to the optimizer), learning rate
`base_learning_rate · batch_size / base_batch_size` divided by 10 at epochs 30
and 40 (counted in steps), cross-entropy, 50 epochs. The modern recipe's options
(configs/ntu_modern.py): a linear warm-up, cosine decay to 0 after it
(`lr_schedule='cosine'`), label smoothing, and the input pipeline's augmentation,
temporal sampling and `repeat` (longer epochs, which the schedule counts).
"""

import contextlib
import functools
import math
import os
import signal
import time
from typing import Any, Callable

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stbln_jax import checkpoint
from stbln_jax import demo
from stbln_jax import evaluate
from stbln_jax import input_pipeline
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import augment

State = dict[str, Any]
LR_SCHEDULES = ('step', 'cosine')


# ---- Config checks (once, at the boundary) ---------------------------------------

def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
                    num_processes: int | None = None) -> None:
  """Raises `models.ConfigError` saying what to change if `config` cannot run here."""
  num_devices = jax.device_count() if num_devices is None else num_devices
  num_processes = jax.process_count() if num_processes is None else num_processes
  evaluate.validate_config(config, num_devices=num_devices, num_processes=num_processes)
  evaluate.check_global_batch('batch_size', config.batch_size, num_devices, num_processes)
  if config.num_epochs < 1:
    raise models.ConfigError(f'num_epochs={config.num_epochs} must be positive')
  if not 0.0 < config.lr_decay_factor <= 1.0:
    raise models.ConfigError(f'lr_decay_factor={config.lr_decay_factor} must be in (0, 1]')
  schedule = config.get('lr_schedule', 'step')
  if schedule not in LR_SCHEDULES:
    raise models.ConfigError(f'lr_schedule={schedule!r} is not a schedule; choose one of '
                             f'{LR_SCHEDULES}')
  if not 0 <= config.warmup_epochs < config.num_epochs:
    raise models.ConfigError(f'warmup_epochs={config.warmup_epochs} must be in [0, '
                             f'num_epochs={config.num_epochs})')
  smoothing = config.get('label_smoothing', 0.0)
  if not 0.0 <= smoothing < 1.0:
    raise models.ConfigError(f'label_smoothing={smoothing} must be in [0, 1)')
  augmentation = config.get('augment') or {}
  rotation, scale = augmentation.get('rotation', 0.0), augmentation.get('scale', 0.0)
  if not 0.0 <= rotation <= math.pi:
    raise models.ConfigError(f'augment.rotation={rotation} must be an angle in [0, π] '
                             f'radians (0: off)')
  if not 0.0 <= scale < 1.0:
    raise models.ConfigError(f'augment.scale={scale} must be in [0, 1) (0: off)')
  isotropic = augmentation.get('isotropic_scale', 0.0)
  if not 0.0 <= isotropic < 1.0:
    raise models.ConfigError(f'augment.isotropic_scale={isotropic} must be in [0, 1) '
                             f'(0: off)')
  axes = augmentation.get('rotation_axes', 'xyz')
  if axes not in augment.ROTATION_AXES:
    raise models.ConfigError(f'augment.rotation_axes={axes!r} must be one of '
                             f'{augment.ROTATION_AXES}')
  repeat = config.get('repeat', 1)
  if not isinstance(repeat, int) or repeat < 1:
    raise models.ConfigError(f'repeat={repeat!r} must be a positive integer (1: each '
                             f'training example once per epoch)')
  for name in ('eval_every_epochs', 'checkpoint_every_epochs', 'keep_checkpoints',
               'log_every_steps'):
    if config[name] < 1:
      raise models.ConfigError(f'{name}={config[name]} must be at least 1')


def fit_to_dataset(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset
                   ) -> tuple[ml_collections.ConfigDict, int]:
  """The config with the dataset's fields where unset (`evaluate.fit_to_dataset`) and
  the steps per epoch, or one ConfigError naming everything that does not fit: the
  model fields, the splits, a batch larger than a training epoch (the training split,
  `repeat` times)."""
  problems = []
  repeat = config.get('repeat', 1)
  if config.train_split in dataset.split_sizes:
    size = dataset.num_examples(config.train_split)
    if size * repeat < config.batch_size:
      problems.append(f'batch_size={config.batch_size} is larger than the {size} examples '
                      f'of {config.train_split} (repeat={repeat})')
  config = evaluate.fit_to_dataset(config, dataset, splits=('train_split', 'eval_split'),
                                   problems=problems)
  return config, dataset.steps_per_epoch(config.train_split, config.batch_size, repeat)


# ---- Optimizer and schedule ------------------------------------------------------

def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
  """Step → learning rate: linear scaling with the batch, optional warm-up, then step
  decays or a cosine to 0 at the last step."""
  peak = config.base_learning_rate * config.batch_size / config.base_batch_size
  boundaries = jnp.asarray([e * steps_per_epoch for e in config.lr_decay_epochs], jnp.int32)
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  cosine = config.get('lr_schedule', 'step') == 'cosine'
  decay_steps = max(config.num_epochs * steps_per_epoch - warmup_steps, 1)

  def schedule(step):
    if cosine:
      progress = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
      lr = peak * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    else:
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
  return jax.jit(init, out_shardings=sharding.replicated(mesh))(rng)


def abstract_train_state(model, config: ml_collections.ConfigDict,
                         optimizer: optax.GradientTransformation, mesh) -> State:
  """Shapes, dtypes and (replicated) shardings of the train state, for restoring."""
  init = _state_initializer(model, config, optimizer)
  shapes = jax.eval_shape(init, jax.random.key(0, impl='rbg'))
  return checkpoint.abstract_like(shapes, sharding.replicated(mesh))


# ---- The step --------------------------------------------------------------------

def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
  """Per-example cross-entropy against (1 - ε)·one-hot + ε/K targets (ε = smoothing)."""
  if not smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def train_step(state: State, batch: dict, *, model, optimizer, schedule,
               label_smoothing: float = 0.0) -> tuple[State, dict]:
  """One SGD step on a global batch; returns the new state and batch-mean metrics
  (the loss is the smoothed one that is minimised)."""

  def loss_fn(params):
    logits, updates = model.apply({'params': params, 'batch_stats': state['batch_stats']},
                                  batch['skeleton'], train=True, mutable=['batch_stats'])
    loss = cross_entropy(logits, batch['label'], label_smoothing).mean()
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


def make_train_step(model, optimizer, schedule, mesh, *, label_smoothing: float = 0.0
                    ) -> Callable:
  """`train_step` jitted on `mesh`: the state is donated, the batch is sharded."""
  return jax.jit(
      functools.partial(train_step, model=model, optimizer=optimizer, schedule=schedule,
                        label_smoothing=label_smoothing),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
      out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
      donate_argnums=(0,))


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


class _TrainLog:
  """Mean training metrics, samples/s and ETA over the steps since the last line.

  Metrics stay on the device until a line is written (no sync per step); time
  spent evaluating and checkpointing is left out of the throughput.
  """

  def __init__(self, batch_size: int, total_steps: int):
    self.batch_size, self.total_steps = batch_size, total_steps
    self._pending, self._start = [], time.perf_counter()

  def add(self, measurements: dict) -> None:
    self._pending.append(measurements)

  def exclude(self, seconds: float) -> None:
    self._start += seconds

  def write(self, step: int, epoch: int, writer: _Writer) -> None:
    pending = jax.device_get(self._pending)
    values = {k: float(np.mean([m[k] for m in pending])) for k in pending[0]}
    seconds = time.perf_counter() - self._start
    values['samples_per_second'] = len(pending) * self.batch_size / seconds
    eta = seconds / len(pending) * (self.total_steps - step)
    if jax.process_index() == 0:
      logging.info('epoch %d step %d/%d: loss %.4f, accuracy %.3f, lr %.4g, %.1f samples/s, '
                   'ETA %s', epoch, step, self.total_steps, values['loss'],
                   values['accuracy'], values['learning_rate'],
                   values['samples_per_second'], _format_duration(eta))
    writer.scalars(step, {f'train/{k}': v for k, v in values.items()})
    self._pending, self._start = [], time.perf_counter()


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# ---- Training --------------------------------------------------------------------

def _restore_or_init(manager, model, config, optimizer, mesh,
                     steps_per_epoch: int) -> tuple[State, list[dict]]:
  """The latest checkpoint's state and evaluations, or a fresh state."""
  if manager.latest_step() is None:
    return create_train_state(model, config, optimizer, mesh), []
  state, progress, step = checkpoint.restore(
      manager, abstract_train_state(model, config, optimizer, mesh))
  epoch, batch = progress['epoch'], progress['batch']
  if epoch * steps_per_epoch + batch != step:
    raise models.ConfigError(
        f'the checkpoint at step {step} was saved at epoch {epoch}, batch {batch}, but '
        f'batch_size={config.batch_size} and repeat={config.get("repeat", 1)} give '
        f'{steps_per_epoch} steps per epoch; resume with the config the run started with '
        f'(config.json in its workdir)')
  logging.info('Resumed from step %d: epoch %d, after %d of its %d batches.', step,
               epoch + 1, batch, steps_per_epoch)
  return state, list(progress.get('evaluations', []))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from `workdir/checkpoints` if present) and evaluates.

  Evaluates `config.eval_split` every `eval_every_epochs` epochs and after the last
  step; checkpoints every `checkpoint_every_epochs` epochs, after the last step and
  on SIGTERM.

  Returns:
    The final evaluation summary (`evaluate.write_reports`), or {} when this call
    did not reach the end of training (SIGTERM) or found it already reached.
  """
  validate_config(config)
  config = demo.prepare_data(config, workdir)
  dataset = input_pipeline.open_dataset(config)
  config, steps_per_epoch = fit_to_dataset(config, dataset)
  mesh = sharding.make_mesh()
  model = models.create_model(config.model)
  schedule = learning_rate_schedule(config, steps_per_epoch)
  optimizer = make_optimizer(config, schedule)
  manager = checkpoint.make_manager(workdir, keep=config.keep_checkpoints)
  state, evaluations = _restore_or_init(manager, model, config, optimizer, mesh,
                                        steps_per_epoch)
  workdir_lib.save_config(config, workdir)
  workdir_lib.save_class_names(dataset.class_names, workdir)
  start_step = int(jax.device_get(state['step']))
  total_steps = config.num_epochs * steps_per_epoch
  if config.max_train_steps is not None:
    total_steps = min(total_steps, config.max_train_steps)
  num_params = sum(x.size for x in jax.tree.leaves(state['params']))
  logging.info('Model: %s mixer, %d layers, %d parameters, λ=%s.', config.model.mixer,
               config.model.num_layers, num_params, config.model.aggregate_at)
  logging.info('Training %d steps (%d per epoch) at global batch %d on %d devices.',
               total_steps, steps_per_epoch, config.batch_size, jax.device_count())
  if start_step >= total_steps:
    logging.info('Nothing to do: the checkpoint is at step %d of %d.', start_step,
                 total_steps)
    manager.close()
    return {}

  train_fn = make_train_step(model, optimizer, schedule, mesh,
                             label_smoothing=config.get('label_smoothing', 0.0))
  eval_fn = evaluate.make_eval_step(model, mesh)
  writer = _Writer(os.path.join(workdir, 'tensorboard'))

  def run_evaluation(state: State, step: int) -> dict:
    variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    result = evaluate.evaluate_split(eval_fn, variables, config, mesh, config.eval_split,
                                     dataset)
    entry = evaluate.evaluation_entry(
        result, epoch=evaluate.epochs_done(step, steps_per_epoch), step=step)
    evaluations.append(entry)
    if jax.process_index() == 0:
      logging.info('epoch %s eval on %s (%d examples): top-1 %.2f%%, top-5 %.2f%%, '
                   'mean class accuracy %.2f%%, loss %.4f', entry['epoch'],
                   config.eval_split, result['num_examples'], 100 * result['top1'],
                   100 * result['top5'], 100 * result['mean_class_accuracy'],
                   result['loss'])
    writer.scalars(step, {f'eval/{k}': entry[k]
                          for k in ('top1', 'top5', 'mean_class_accuracy', 'loss')})
    return result

  def evaluation_due(step: int) -> bool:
    epoch, rest = divmod(step, steps_per_epoch)
    return rest == 0 and epoch % config.eval_every_epochs == 0

  if (evaluation_due(start_step) and start_step > 0
      and all(e['step'] != start_step for e in evaluations)):
    run_evaluation(state, start_step)  # skipped when SIGTERM stopped the run at this step

  summary = {}
  train_log = _TrainLog(config.batch_size, total_steps)
  batches = input_pipeline.train_stream(config, start_step=start_step, dataset=dataset)
  with StopRequest() as stop_requested:
    for step, batch in zip(range(start_step, total_steps), batches):
      state, measurements = train_fn(state, sharding.to_global(batch, mesh))
      train_log.add(measurements)
      done = step + 1
      epoch, batch_in_epoch = divmod(done, steps_per_epoch)
      if done % config.log_every_steps == 0 or done == total_steps:
        train_log.write(done, step // steps_per_epoch + 1, writer)
      stop = stop_requested(done)
      last = done == total_steps
      pause_start = time.perf_counter()

      # On SIGTERM, save without the periodic evaluation: the grace period is short.
      result = None
      if last or (evaluation_due(done) and not stop):
        result = run_evaluation(state, done)
      if last:
        summary = evaluate.write_reports(
            result, config, workdir, config.eval_split, dataset, step=done,
            epoch=evaluations[-1]['epoch'], evaluations=evaluations)
        if jax.process_index() == 0:
          logging.info('Final: %s; reports (eval_%s.json, confusion_%s.png, '
                       'scores_%s.npz) in %s.', evaluate.describe(summary),
                       *[config.eval_split] * 3, workdir)
      if (last or stop or
          (batch_in_epoch == 0 and epoch % config.checkpoint_every_epochs == 0)):
        checkpoint.save(manager, state,
                        progress={'epoch': epoch, 'batch': batch_in_epoch,
                                  'evaluations': evaluations},
                        metrics=None if result is None else {'top1': result['top1']})
      train_log.exclude(time.perf_counter() - pause_start)
      if stop:
        logging.info('Stopped at step %d (%s epochs done); rerun the same command to '
                     'resume.', done, evaluate.epochs_done(done, steps_per_epoch))
        break
  batches.close()
  manager.wait_until_finished()
  manager.close()
  writer.close()
  return summary
