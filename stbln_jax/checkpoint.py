"""Checkpoints of a training run: Orbax `CheckpointManager` under `workdir/checkpoints`.

A checkpoint is one step directory with two items:
  'state'     the train state pytree (step, params, batch_stats, opt_state);
  'progress'  JSON {'epoch', 'batch', 'evaluations'}: the next batch to run is
              batch `batch` of epoch `epoch`, and `evaluations` lists the run's
              evaluations so far. The data order is a function of (config.seed,
              epoch), so a resumed run sees exactly the batches an uninterrupted
              run would have seen, and reports the same best epoch.
Checkpoints saved after an evaluation also carry its metrics ({} otherwise), so the
manager keeps the last `keep` checkpoints plus the best one by evaluation top-1.

Crashes and damage: a checkpoint is written under a temporary name and renamed when
complete, and older ones are deleted only after that, so a crash (even during a
save) leaves the previous checkpoint in place; temporary directories of interrupted
saves are removed when the next writer starts. A committed checkpoint can still be
damaged later (truncated files, a cut-short copy). Restoring the latest checkpoint
then reports the damaged one in one line, moves it aside to
`workdir/checkpoints_unreadable/` (never deletes it) and takes the next older one;
an explicitly requested step that cannot be read is a `CheckpointError` naming it
and the steps that can.

Readers name a checkpoint by its step, by `BEST` ('best': the one whose evaluation
has the highest top-1, which the manager keeps) or by None (the latest).
"""

import gc
import logging as std_logging
import os
import sys
from typing import Any, Callable

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = 'top1'
BEST = 'best'  # the step of the checkpoint with the best evaluation
STEP_HELP = ("A step number, or 'best': the checkpoint with the best evaluation (default: "
             "latest).")
UNREADABLE_DIR = 'checkpoints_unreadable'


class CheckpointError(ValueError):
  """No checkpoint that was asked for (or none at all) can be read."""


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def _best_metric(metrics: dict) -> float:
  # Checkpoints saved without an evaluation carry {} and never count as the best.
  return float(metrics.get(BEST_METRIC, float('-inf')))


def make_manager(workdir: str, *, keep: int = 3,
                 create: bool = True) -> ocp.CheckpointManager:
  """The run's checkpoint manager; `create=False` to only read (evaluation, prediction).

  A manager deletes old checkpoints only when it saves, so a reader is harmless.
  """
  if keep < 1:
    raise ValueError(f'keep_checkpoints={keep} must be at least 1')
  options = ocp.CheckpointManagerOptions(
      # `best_fn` makes the manager store the metrics and answer `best_step`; which
      # steps survive is decided by the preservation policy alone.
      best_fn=_best_metric,
      best_mode='max',
      preservation_policy=checkpoint_managers.AnyPreservationPolicy([
          checkpoint_managers.LatestN(n=keep),
          checkpoint_managers.BestN(get_metric_fn=_best_metric, reverse=False, n=1,
                                    keep_checkpoints_without_metrics=False),
      ]),
      create=create,
      # A writer removes what saves cut short by a crash left behind.
      cleanup_tmp_directories=create,
  )
  # Handlers named up front: a reader can then ask for a step's metadata.
  return ocp.CheckpointManager(
      checkpoint_dir(workdir), options=options,
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'progress': ocp.JsonCheckpointHandler()})


def save(manager: ocp.CheckpointManager, state: Any, *, progress: dict,
         metrics: dict | None = None) -> bool:
  """Saves `state` at its step, unless that step is already saved (False then).

  Asynchronous: call `manager.wait_until_finished()` before the process exits.
  """
  step = int(jax.device_get(state['step']))
  if step in manager.all_steps():
    return False
  return manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                              progress=ocp.args.JsonSave(progress)),
      metrics=metrics or {},
      force=True)


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            step: int | None = None) -> tuple[Any, dict, int]:
  """Restores (state, progress, step) from `step` (default: the latest readable).

  Args:
    manager: from `make_manager`.
    abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings, shaped like
      the saved state; arrays come back with those shardings.
    step: which checkpoint; None for the latest that can be read (unreadable newer
      ones are moved aside).

  Raises:
    FileNotFoundError: no checkpoint (or not that step) in the manager's directory.
    CheckpointError: `step` (or, with step None, every checkpoint) cannot be read.
  """
  def load(s):
    _check_same_network(manager, s, abstract_state)
    restored = manager.restore(
        s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                   progress=ocp.args.JsonRestore()))
    return restored['state'], dict(restored['progress'])
  (state, progress), step = _restore_readable(manager, step, load)
  return state, progress, step


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(path): tuple(x.shape)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_same_network(manager: ocp.CheckpointManager, step: int,
                        abstract_state: Any) -> None:
  """CheckpointError if checkpoint `step` holds another network than `abstract_state`.

  A readable checkpoint of another network is the config's fault, not damage: it
  must never be moved aside.
  """
  saved_tree = manager.item_metadata(step)['state'].tree
  for part in ('params', 'batch_stats'):
    saved, wanted = _shapes(saved_tree[part]), _shapes(abstract_state[part])
    if saved != wanted:
      name = sorted(set(saved.items()) ^ set(wanted.items()))[0][0]
      raise CheckpointError(
          f'checkpoint at step {step} ({step_path(manager, step)}) holds another network '
          f'than the config ({part}{name}: saved {saved.get(name)}, config '
          f'{wanted.get(name)}); resume with the config the run started with '
          f'(config.json in its workdir)')


def chosen_step(manager: ocp.CheckpointManager, step: int | str | None) -> int | None:
  """The step a reader names (a number, its text, `BEST`), or None for the latest."""
  if step is None or isinstance(step, int):
    return step
  if step != BEST:
    try:
      return int(step)
    except ValueError:
      raise CheckpointError(f'checkpoint step {step!r} is neither a step number nor '
                            f'{BEST!r}') from None
  scored = [(-_best_metric(manager.metrics(s) or {}), s) for s in manager.all_steps()]
  scored = [score for score in scored if score[0] != float('inf')]
  if not scored:
    raise CheckpointError(f'no checkpoint in {manager.directory} was saved with an '
                          f'evaluation, so none is the best; name a step (available: '
                          f'{sorted(manager.all_steps()) or "none"})')
  return min(scored)[1]  # the highest top-1, the earliest of ties


def restore_variables(workdir: str, sharding: jax.sharding.Sharding,
                      step: int | str | None = None) -> tuple[dict, dict, int]:
  """({'params', 'batch_stats'}, progress, step) of checkpoint `step` (default: latest;
  `BEST`: the best evaluation's).

  Shapes come from the checkpoint itself, so no model or optimizer is needed; every
  array is placed with `sharding`. Unreadable checkpoints are handled as in `restore`.
  """
  manager = make_manager(workdir, create=False)

  def load(s):
    tree = manager.item_metadata(s)['state'].tree
    restored = manager.restore(s, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_like(tree, sharding)),
        progress=ocp.args.JsonRestore()))
    state = restored['state']
    return ({'params': state['params'], 'batch_stats': state['batch_stats']},
            dict(restored['progress']))
  try:
    (variables, progress), step = _restore_readable(manager, chosen_step(manager, step),
                                                    load)
  finally:
    manager.close()
  return variables, progress, step


def _existing_step(manager: ocp.CheckpointManager, step: int | None) -> int:
  steps = manager.all_steps()
  if step is None:
    step = manager.latest_step()
  if step is None or step not in steps:
    raise FileNotFoundError(
        f'no checkpoint{"" if step is None else f" at step {step}"} in '
        f'{manager.directory} (available steps: {sorted(steps) or "none"})')
  return step


# ---- Unreadable checkpoints ------------------------------------------------------

class _Unreadable(Exception):
  """One checkpoint failed to load: `reason` is the root cause's first line."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def _root_cause(error: BaseException) -> str:
  """The first line of the innermost exception of `error`'s chain."""
  seen = set()
  while id(error) not in seen:
    seen.add(id(error))
    inner = error.__cause__ or error.__context__
    if inner is None:
      break
    error = inner
  lines = str(error).strip().splitlines()
  # TensorStore appends its whole JSON spec: the path in the message says enough.
  first = lines[0].split(" [tensorstore_spec=")[0] if lines else ''
  return f'{type(error).__name__}: {first}'.rstrip(': ')


def _is_aborted_read_noise(unraisable) -> bool:
  """What an aborted Orbax read leaves for the interpreter to report, later."""
  code = getattr(unraisable.object, 'cr_code', None)  # a coroutine never awaited
  if code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename:
    return True
  # Callbacks of TensorStore reads still in flight when the event loop closed.
  error = unraisable.exc_value
  return isinstance(error, RuntimeError) and 'Event loop is closed' in str(error)


def _drop_aborted_read_noise() -> None:
  """Drops what an aborted read leaves behind (tracebacks in other threads)."""
  previous = sys.unraisablehook
  if getattr(previous, 'drops_aborted_read_noise', False):
    return

  def hook(unraisable):
    if not _is_aborted_read_noise(unraisable):
      previous(unraisable)
  hook.drops_aborted_read_noise = True
  sys.unraisablehook = hook
  # Reads of the same checkpoint still in flight end as asyncio tasks whose failure
  # nobody retrieves; asyncio logs each when it is collected.
  std_logging.getLogger('asyncio').addFilter(
      lambda record: not str(record.msg).startswith(('Task exception was never retrieved',
                                                     'Exception in callback')))


def _try_load(load: Callable[[int], Any], step: int) -> Any:
  # A failing read's other threads report before the failure reaches this frame.
  _drop_aborted_read_noise()
  try:
    return load(step)
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    # Orbax and TensorStore raise plain Exceptions, ValueErrors and OSErrors for
    # missing, truncated or garbled files alike.
    gc.collect()  # the aborted read's coroutines, now rather than at exit
    raise _Unreadable(_root_cause(e)) from e


def step_path(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(manager.directory), str(step))


def _move_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves checkpoint `step` to <workdir>/checkpoints_unreadable/ (process 0)."""
  source = step_path(manager, step)
  target_dir = os.path.join(os.path.dirname(str(manager.directory)), UNREADABLE_DIR)
  target = os.path.join(target_dir, str(step))
  n = 1
  while os.path.exists(target):
    target = os.path.join(target_dir, f'{step}.{n}')
    n += 1
  multiprocess = jax.process_count() > 1
  if multiprocess:  # every process has tried (and failed) before it moves
    multihost_utils.sync_global_devices(f'checkpoint {step} cannot be read')
  if jax.process_index() == 0:
    os.makedirs(target_dir, exist_ok=True)
    os.replace(source, target)
  if multiprocess:
    multihost_utils.sync_global_devices(f'checkpoint {step} moved aside')
  manager.reload()
  return target


def _restore_readable(manager: ocp.CheckpointManager, step: int | None,
                      load: Callable[[int], Any]) -> tuple[Any, int]:
  """`load(step)`, or the latest readable step's when `step` is None."""
  if step is not None:
    step = _existing_step(manager, step)
    try:
      return _try_load(load, step), step
    except _Unreadable as e:
      readable = []
      for other in sorted(manager.all_steps()):
        if other != step:
          try:
            _try_load(load, other)
            readable.append(other)
          except _Unreadable:
            pass
      raise CheckpointError(
          f'checkpoint at step {step} ({step_path(manager, step)}) cannot be read: '
          f'{e.reason}; readable steps: {readable or "none"}') from None
  _existing_step(manager, None)  # FileNotFoundError if there is none at all
  moved = []
  for candidate in sorted(manager.all_steps(), reverse=True):
    try:
      return _try_load(load, candidate), candidate
    except _Unreadable as e:
      target = _move_aside(manager, candidate)
      moved.append(candidate)
      logging.warning('checkpoint at step %d (%s) cannot be read: %s; moved to %s, '
                      'trying the next older one', candidate,
                      step_path(manager, candidate), e.reason, target)
  raise CheckpointError(
      f'no checkpoint in {manager.directory} can be read (steps {moved} were moved to '
      f'{os.path.join(os.path.dirname(str(manager.directory)), UNREADABLE_DIR)})')


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """Shape/dtype placeholders of `tree`, all with one `sharding` (for `restore`)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
