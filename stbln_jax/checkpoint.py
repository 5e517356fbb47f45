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
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = 'top1'


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
  """Restores (state, progress, step) from `step` (default: the latest).

  Args:
    manager: from `make_manager`.
    abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings, shaped like
      the saved state; arrays come back with those shardings.
    step: which checkpoint; None for the latest.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) in the manager's directory.
  """
  step = _existing_step(manager, step)
  restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                    progress=ocp.args.JsonRestore()))
  return restored['state'], dict(restored['progress']), step


def _existing_step(manager: ocp.CheckpointManager, step: int | None) -> int:
  steps = manager.all_steps()
  if step is None:
    step = manager.latest_step()
  if step is None or step not in steps:
    raise FileNotFoundError(
        f'no checkpoint{"" if step is None else f" at step {step}"} in '
        f'{manager.directory} (available steps: {sorted(steps) or "none"})')
  return step


def restore_variables(workdir: str, sharding: jax.sharding.Sharding,
                      step: int | None = None) -> tuple[dict, dict, int]:
  """({'params', 'batch_stats'}, progress, step) of checkpoint `step` (default: latest).

  Shapes come from the checkpoint itself, so no model or optimizer is needed; every
  array is placed with `sharding`.
  """
  manager = make_manager(workdir, create=False)
  try:
    step = _existing_step(manager, step)
    tree = manager.item_metadata(step)['state'].tree
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_like(tree, sharding)),
        progress=ocp.args.JsonRestore()))
  finally:
    manager.close()
  state = restored['state']
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  return variables, dict(restored['progress']), step


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """Shape/dtype placeholders of `tree`, all with one `sharding` (for `restore`)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
