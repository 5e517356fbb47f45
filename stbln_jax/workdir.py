"""The files of a run's workdir, other than checkpoints: config, names, reports.

  config.json            the run's config: `--mode=eval` and `predict` need no --config
  class_names.json       the action names by label: `predict` needs no dataset
  eval_<split>.json      an evaluation's summary (`evaluate.write_reports`)
  scores_<split>.npz     per-sample names, labels and logits: the input of `ensemble`
  confusion_<split>.png  the confusion matrix
  checkpoints/           Orbax checkpoints (`checkpoint`)
  tensorboard/           training and evaluation scalars

Writers write from process 0 only; every process may read.
"""

import json
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

CONFIG_FILE = 'config.json'
CLASS_NAMES_FILE = 'class_names.json'


def _is_writer() -> bool:
  return jax.process_index() == 0


def _missing(path: str, workdir: str, what: str) -> FileNotFoundError:
  return FileNotFoundError(f'{path} not found: is {workdir!r} the --workdir of a '
                           f'{what}?')


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if _is_writer():
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
      f.write(config.to_json(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config `save_config` wrote in `workdir`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise _missing(path, workdir, 'training run')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def save_class_names(names: Sequence[str], workdir: str) -> None:
  if _is_writer():
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, CLASS_NAMES_FILE), 'w') as f:
      json.dump(list(names), f, indent=0)


def load_class_names(workdir: str) -> list[str]:
  path = os.path.join(workdir, CLASS_NAMES_FILE)
  if not os.path.exists(path):
    raise _missing(path, workdir, 'training run')
  with open(path) as f:
    return json.load(f)


def write_json(path: str, values: dict) -> None:
  """One line per top-level entry: a confusion matrix stays one (long) line."""
  if _is_writer():
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
      f.write('{\n' + ',\n'.join(f'  {json.dumps(k)}: {json.dumps(v)}'
                                 for k, v in values.items()) + '\n}\n')


def scores_path(workdir: str, split: str) -> str:
  return os.path.join(workdir, f'scores_{split}.npz')


def save_scores(workdir: str, split: str, *, names: Sequence[str], labels: np.ndarray,
                logits: np.ndarray) -> None:
  """Per sample, in split order: its name, label and logits."""
  if _is_writer():
    os.makedirs(workdir, exist_ok=True)
    np.savez(scores_path(workdir, split), names=np.asarray(names), labels=labels,
             logits=logits)


def scored_splits(workdir: str) -> list[str]:
  """The splits of `workdir` with a scores_<split>.npz, sorted."""
  names = os.listdir(workdir) if os.path.isdir(workdir) else []
  return sorted(n[len('scores_'):-len('.npz')] for n in names
                if n.startswith('scores_') and n.endswith('.npz'))


def load_scores(workdir: str, split: str) -> dict[str, np.ndarray]:
  """{'names', 'labels', 'logits'} as `save_scores` wrote them."""
  path = scores_path(workdir, split)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found; evaluate first: python -m '
                            f'stbln_jax.main --mode=eval --workdir={workdir}')
  with np.load(path) as f:
    return {k: f[k] for k in ('names', 'labels', 'logits')}
