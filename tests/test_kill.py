"""SIGKILL a tiny training run (or a dataset build) at several points, rerun it, get
the uninterrupted result.

Each killed run is `python -m stbln_jax.main` with one function wrapped to SIGKILL
the process when it is reached: the N-th training step, the commit of a checkpoint
(its arrays written under the temporary name, not yet renamed) and the writing of
the final report. One more run is killed from outside as soon as it logs a
training step. A last rerun must then end with the parameters, evaluation report
and per-sample logits of a run that was never interrupted. A dataset build killed
while writing records, or just before it records the dataset as complete, must leave
no dataset that opens, and its rerun must write the records of an uninterrupted build.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from tensorflow_datasets.proto import tf_example_pb2

from stbln_jax import checkpoint
from stbln_jax import input_pipeline
from stbln_jax import sharding
from stbln_jax import train
from tiny_run import (  # pylint: disable=unused-import
    REPO, load_config, main_command, subprocess_env, tiny_config_file, write_tiny_raw)

TIMEOUT = 300  # seconds, per run

# Runs `stbln_jax.main` as `python -m` would, with KILL_AT's function wrapped to
# SIGKILL this process on its KILL_CALL-th call.
KILLING_MAIN = '''
import os, runpy, signal
import orbax.checkpoint._src.path.atomicity as atomicity
from stbln_jax import train, workdir

where, call = os.environ['KILL_AT'], int(os.environ['KILL_CALL'])
calls = [0]

def reached():
  calls[0] += 1
  if calls[0] == call:
    os.kill(os.getpid(), signal.SIGKILL)

if where == 'train_step':
  make = train.make_train_step
  def make_killing(*args, **kwargs):
    step = make(*args, **kwargs)
    def killing(*a):
      reached()
      return step(*a)
    return killing
  train.make_train_step = make_killing
elif where == 'checkpoint_commit':
  finalize = atomicity.AtomicRenameTemporaryPath.finalize
  async def killing_finalize(self):
    reached()
    return await finalize(self)
  atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize
elif where == 'report':
  write_json = workdir.write_json
  def killing_write_json(*a, **k):
    reached()
    return write_json(*a, **k)
  workdir.write_json = killing_write_json
runpy.run_module('stbln_jax.main', run_name='__main__', alter_sys=True)
'''


def killed_run(config_file, workdir, where, call=1):
  argv = main_command(config_file, workdir)
  result = subprocess.run([sys.executable, '-c', KILLING_MAIN, *argv[3:]], cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=subprocess_env(KILL_AT=where, KILL_CALL=str(call)))
  assert result.returncode == -signal.SIGKILL, (where, result.stderr[-3000:])


def kill_when(proc, ready):
  """SIGKILLs `proc` once `ready(proc)` returns True (it waits for that, or returns
  False when the process ended first); the process's return code."""
  try:
    if ready(proc):
      proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  return proc.returncode


def run_killed_from_outside(config_file, workdir):
  """Starts a run and SIGKILLs it as soon as it logs a training step."""
  proc = subprocess.Popen(main_command(config_file, workdir), cwd=REPO,
                          env=subprocess_env(), text=True, stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL)
  return kill_when(proc, lambda p: any(' step ' in line and '/4: loss' in line
                                       for line in p.stderr))


def read_run(workdir):
  variables, _, step = checkpoint.restore_variables(
      str(workdir), sharding.replicated(sharding.make_mesh()))
  with open(workdir / 'eval_test.json') as f:
    report = json.load(f)
  with np.load(workdir / 'scores_test.npz') as f:
    logits = f['logits']
  return jax.device_get(variables), step, report, logits


def test_killed_runs_rerun_to_the_uninterrupted_result(tiny_config_file, tmp_path):
  reference = tmp_path / 'uninterrupted'
  train.train_and_evaluate(load_config(tiny_config_file), str(reference))

  workdir = tmp_path / 'killed'
  killed_run(tiny_config_file, workdir, 'train_step', call=3)  # in epoch 2
  killed_run(tiny_config_file, workdir, 'checkpoint_commit')
  # The save was cut short: its temporary directory is all it left.
  left = os.listdir(workdir / 'checkpoints')
  assert any('tmp' in name for name in left), left
  killed_run(tiny_config_file, workdir, 'report')
  assert run_killed_from_outside(tiny_config_file, workdir) == -signal.SIGKILL
  result = subprocess.run(main_command(tiny_config_file, workdir), cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=subprocess_env())
  assert result.returncode == 0, result.stderr[-3000:]

  expected_variables, expected_step, expected_report, expected_logits = read_run(reference)
  variables, step, report, logits = read_run(workdir)
  assert step == expected_step == 4
  jax.tree.map(np.testing.assert_array_equal, variables, expected_variables)
  np.testing.assert_array_equal(logits, expected_logits)
  for key in ('step', 'epoch', 'top1', 'top5', 'loss', 'evaluations', 'best_epoch'):
    assert report[key] == expected_report[key], key
  # Nothing half-written remains.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']


# ---- Dataset builds ------------------------------------------------------------------

# `data_prep.build` with the dataset's info (the mark of a complete build, written
# last) never written: SIGKILL when it is about to be.
KILLING_BUILD = '''
import os, runpy, signal
import tensorflow_datasets as tfds

def killing_write(self, *args, **kwargs):
  os.kill(os.getpid(), signal.SIGKILL)
tfds.core.DatasetInfo.write_to_directory = killing_write
runpy.run_module('data_prep.build', run_name='__main__', alter_sys=True)
'''


def build_argv(raw, data_dir):
  return ['ntu_rgbd/xview', f'--manual_dir={raw}', f'--data_dir={data_dir}',
          '--num_processes=1', '--quiet']


def build_killed_while_writing(raw, data_dir):
  """Starts a build and SIGKILLs it as soon as it has written a record file."""
  proc = subprocess.Popen([sys.executable, '-m', 'data_prep.build',
                           *build_argv(raw, data_dir)], cwd=REPO, env=subprocess_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + TIMEOUT

  def wrote_a_record(p):
    while p.poll() is None and time.monotonic() < deadline:
      if any('array_record' in name for _, _, files in os.walk(data_dir) for name in files):
        return True
      time.sleep(0.005)
    return False
  return kill_when(proc, wrote_a_record)


def records(config):
  """{split: [record in order]} of the built dataset of `config`, as protos (whose
  equality, unlike their bytes, does not depend on the order of their features)."""
  dataset = input_pipeline.open_dataset(config)
  return {split: [tf_example_pb2.Example.FromString(r)
                  for r in dataset.reader(split).read(list(range(size)))]
          for split, size in dataset.split_sizes.items()}


def test_killed_dataset_builds_are_never_taken_as_complete(tiny_config_file, tmp_path):
  raw, data_dir = tmp_path / 'raw', tmp_path / 'tfds'
  write_tiny_raw(raw)
  config = load_config(tiny_config_file)
  expected = records(config)
  config.data_dir = str(data_dir)

  returncode = build_killed_while_writing(raw, data_dir)
  if returncode == -signal.SIGKILL:  # (the build may finish before a file is seen)
    with pytest.raises(FileNotFoundError, match='is not built'):
      input_pipeline.open_dataset(config)
  result = subprocess.run([sys.executable, '-c', KILLING_BUILD, *build_argv(raw, data_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
                          env=subprocess_env())
  if returncode == -signal.SIGKILL:
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    with pytest.raises(FileNotFoundError, match='is not built'):
      input_pipeline.open_dataset(config)

  result = subprocess.run([sys.executable, '-m', 'data_prep.build',
                           *build_argv(raw, data_dir)], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT, env=subprocess_env())
  assert result.returncode == 0, result.stderr[-3000:]
  assert records(config) == expected
