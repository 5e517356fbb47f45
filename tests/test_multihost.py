"""A real two-process run: two `stbln_jax.main` processes joined by jax.distributed.

Each process has 2 CPU devices (4 in all) and talks to the other over gloo on
127.0.0.1. The run must end where one process with 4 devices ends: the same final
parameters and the same evaluation report, written once.
"""

import json
import os
import shutil
import socket
import subprocess

import jax
import numpy as np
import pytest

from stbln_jax import checkpoint
from stbln_jax import sharding
from stbln_jax import train
from tiny_run import (  # pylint: disable=unused-import
    REPO, damage, load_config, main_command, subprocess_env, tiny_config_file)

TIMEOUT = 420  # seconds, per process


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def final_variables(workdir):
  variables, _, step = checkpoint.restore_variables(
      str(workdir), sharding.replicated(sharding.make_mesh()))
  return jax.device_get(variables), step


def read_json(path):
  with open(path) as f:
    return json.load(f)


def run_two_processes(config_file, workdir, *, env_flags: bool):
  """Starts processes 0 and 1 (flags, or JAX's environment variables); waits for both."""
  address = f'127.0.0.1:{free_port()}'
  env = subprocess_env(num_devices=2)
  procs = []
  for process_id in range(2):
    argv = main_command(config_file, workdir, '--multihost')
    process_env = dict(env)
    if env_flags:
      process_env.update(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES='2',
                         JAX_PROCESS_ID=str(process_id))
    else:
      argv += [f'--coordinator_address={address}', '--num_processes=2',
               f'--process_id={process_id}']
    procs.append(subprocess.Popen(argv, cwd=REPO, env=process_env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  outputs = []
  try:
    for proc in procs:
      _, stderr = proc.communicate(timeout=TIMEOUT)
      outputs.append(stderr)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for process_id, (proc, stderr) in enumerate(zip(procs, outputs)):
    assert proc.returncode == 0, f'process {process_id}:\n{stderr[-5000:]}'
  return outputs


@pytest.fixture(scope='module')
def runs(tiny_config_file, tmp_path_factory):
  """Workdirs of one process with 4 devices and of two with 2 each; the two logs."""
  assert jax.device_count() == 4, 'conftest.py should give JAX four CPU devices'
  one = tmp_path_factory.mktemp('one_process')
  summary = train.train_and_evaluate(load_config(tiny_config_file), str(one))
  assert summary['num_examples'] == 4
  two = tmp_path_factory.mktemp('two_processes')
  logs = run_two_processes(tiny_config_file, two, env_flags=False)
  return one, two, logs


def assert_close_variables(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a, b)


def test_two_processes_train_like_one_process_with_four_devices(runs):
  one, two, logs = runs
  for process_id, log in enumerate(logs):
    assert f'JAX process {process_id} of 2; 2 local of 4 devices' in log, log[-3000:]

  # The same parameters (and BatchNorm statistics) after the same 4 steps.
  (expected, step_one), (actual, step_two) = final_variables(one), final_variables(two)
  assert step_one == step_two == 4
  assert_close_variables(expected, actual)

  # The same evaluation report and per-sample scores.
  report_one, report_two = (read_json(d / 'eval_test.json') for d in (one, two))
  for key in ('num_examples', 'step', 'epoch', 'top1', 'top5'):
    assert report_two[key] == report_one[key], key
  assert report_two['loss'] == pytest.approx(report_one['loss'], rel=1e-4)
  assert [e['step'] for e in report_two['evaluations']] == [2, 4]
  with np.load(one / 'scores_test.npz') as a, np.load(two / 'scores_test.npz') as b:
    assert list(a['names']) == list(b['names'])
    np.testing.assert_allclose(a['logits'], b['logits'], rtol=1e-4, atol=1e-4)

  # Checkpoints written once: one directory per step, nothing left half-written.
  assert sorted(os.listdir(two / 'checkpoints')) == ['2', '4']
  # Metrics from process 0 only: one TensorBoard file, training lines in one log.
  assert len(os.listdir(two / 'tensorboard')) == 1
  assert 'eval on test' in logs[0] and 'epoch 1 step 1/4' in logs[0]
  assert 'eval on test' not in logs[1] and 'step 1/4' not in logs[1]
  assert 'Final:' in logs[0] and 'Final:' not in logs[1]


def test_two_processes_recover_from_a_damaged_checkpoint_with_jax_variables(
    runs, tiny_config_file, tmp_path):
  """JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID instead of the
  flags, rerunning the two-process run with its last checkpoint damaged."""
  one, two, _ = runs
  workdir = tmp_path / 'run'
  shutil.copytree(two, workdir)
  damage(workdir, 4)
  logs = run_two_processes(tiny_config_file, workdir, env_flags=True)
  for process_id, log in enumerate(logs):
    assert f'JAX process {process_id} of 2; 2 local of 4 devices' in log, log[-3000:]
    assert 'checkpoint at step 4' in log and 'Resumed from step 2' in log, log[-3000:]
  assert os.listdir(workdir / checkpoint.UNREADABLE_DIR) == ['4']
  variables, step = final_variables(workdir)
  assert step == 4
  assert_close_variables(final_variables(one)[0], variables)
