"""Damaged checkpoints: reported in one line, moved aside, the next older one used.

The damage is what a full disk or a cut-short copy leaves: the array files of a
committed checkpoint truncated to half their size.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from stbln_jax import checkpoint
from stbln_jax import sharding
from stbln_jax import train
from tiny_run import (  # pylint: disable=unused-import
    REPO, damage, load_config, subprocess_env, tiny_config_file)


@pytest.fixture(scope='module')
def trained(tiny_config_file, tmp_path_factory):
  """(workdir, final variables) of an uninterrupted run: checkpoints at steps 2 and 4."""
  workdir = tmp_path_factory.mktemp('trained')
  train.train_and_evaluate(load_config(tiny_config_file), str(workdir))
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  return workdir, final_variables(workdir)


def final_variables(workdir, step=None):
  variables, _, restored_step = checkpoint.restore_variables(
      str(workdir), sharding.replicated(sharding.make_mesh()), step)
  return jax.device_get(variables), restored_step


def copy_run(trained, tmp_path, name):
  workdir = tmp_path / name
  shutil.copytree(trained[0], workdir)
  return workdir


def run_eval(workdir, *flags):
  """`main --mode=eval` on a workdir (its saved config.json)."""
  return subprocess.run(
      [sys.executable, '-m', 'stbln_jax.main', f'--workdir={workdir}', '--mode=eval', *flags],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=subprocess_env())


def assert_same_variables(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_training_resumes_from_the_previous_checkpoint_and_finishes(
    trained, tiny_config_file, tmp_path, caplog):
  workdir = copy_run(trained, tmp_path, 'run')
  damage(workdir, 4)
  with caplog.at_level('WARNING'):
    summary = train.train_and_evaluate(load_config(tiny_config_file), str(workdir))
  # Resumed from step 2, ran steps 3 and 4 again, evaluated and saved step 4.
  assert summary['step'] == 4
  warnings = [r.getMessage() for r in caplog.records
              if 'cannot be read' in r.getMessage()]
  assert len(warnings) == 1 and 'step 4' in warnings[0], warnings
  assert str(workdir / 'checkpoints' / '4') in warnings[0]
  assert 'OUT_OF_RANGE' in warnings[0] and '\n' not in warnings[0]
  # Moved aside, not deleted; the new step 4 is the uninterrupted run's.
  assert os.listdir(workdir / checkpoint.UNREADABLE_DIR) == ['4']
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  variables, step = final_variables(workdir)
  assert step == 4
  assert_same_variables(variables, trained[1][0])
  assert [e['step'] for e in summary['evaluations']] == [2, 4]


def test_evaluation_takes_the_latest_readable_checkpoint(trained, tmp_path):
  workdir = copy_run(trained, tmp_path, 'run')
  damage(workdir, 4)
  result = run_eval(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  # One line says which checkpoint was skipped; no tracebacks from Orbax's readers.
  assert 'Traceback' not in result.stderr and 'Exception' not in result.stderr
  skipped = [line for line in result.stderr.splitlines() if 'cannot be read' in line]
  assert len(skipped) == 1 and 'step 4' in skipped[0], result.stderr[-3000:]
  with open(workdir / 'eval_test.json') as f:  # the step-2 checkpoint's report
    assert json.load(f)['step'] == 2
  assert os.listdir(workdir / checkpoint.UNREADABLE_DIR) == ['4']


def test_an_unreadable_requested_step_is_one_line_naming_it_and_the_readable_ones(
    trained, tmp_path):
  workdir = copy_run(trained, tmp_path, 'run')
  damage(workdir, 4)
  result = run_eval(workdir, '--checkpoint_step=4')
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert errors == result.stderr.strip().splitlines()[-1:], result.stderr[-3000:]
  assert errors[0].startswith('error: checkpoint at step 4 (')
  assert str(workdir / 'checkpoints' / '4') in errors[0]
  assert 'OUT_OF_RANGE' in errors[0] and 'tensorstore_spec' not in errors[0]
  assert errors[0].endswith('readable steps: [2]')
  # An explicitly requested checkpoint is left where it is.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']


def test_no_readable_checkpoint_at_all_is_an_error_not_a_fresh_start(trained, tmp_path):
  workdir = copy_run(trained, tmp_path, 'run')
  damage(workdir, 2)
  damage(workdir, 4)
  with pytest.raises(checkpoint.CheckpointError, match='no checkpoint in .* can be read'):
    final_variables(workdir)
  assert sorted(os.listdir(workdir / checkpoint.UNREADABLE_DIR)) == ['2', '4']


def test_a_readable_checkpoint_of_another_network_is_an_error_and_stays(
    trained, tiny_config_file, tmp_path):
  workdir = copy_run(trained, tmp_path, 'run')
  config = load_config(tiny_config_file)
  config.model.channels = (8, 16)
  with pytest.raises(checkpoint.CheckpointError, match='holds another network'):
    train.train_and_evaluate(config, str(workdir))
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  assert not (workdir / checkpoint.UNREADABLE_DIR).exists()
