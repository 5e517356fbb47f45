"""The benchmark and host memory."""

import os
import platform
import subprocess
import sys

import jax
import pytest

from stbln_jax import benchmark


def test_benchmark_runs_on_a_tiny_network_and_reports_positive_numbers():
  variant = benchmark.Variant(batch=2, frames=8, num_layers=1)
  row = benchmark.run_variant(variant, repeats=1, steps=1, warmup=0)
  for key in ('train_samples_per_s', 'infer_samples_per_s', 'train_gflop_per_s',
              'infer_gflop_per_s', 'train_compile_s', 'infer_compile_s'):
    assert row[key] > 0, (key, row)
  # The training step does forward and backward: well over the forward's FLOPs.
  assert row['train_gflops_per_sample'] > 2 * row['infer_gflops_per_sample'] > 0
  # It also holds the forward pass's activations for the backward pass.
  assert row['train_memory_gb'] > row['infer_memory_gb'] > 0
  table = benchmark.format_table([row])
  assert 'bilinear' in table and len(table.splitlines()) == 3


def test_a_mode_out_of_device_memory_is_reported_and_the_run_goes_on(monkeypatch):
  calls = []

  def fake_time_calls(fns, repeats, steps, warmup):
    calls.append(len(fns))
    if len(calls) == 2:  # the training step, timed after inference
      raise jax.errors.JaxRuntimeError(
          'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1234 bytes.')
    return [[0.5] * repeats for _ in fns]

  monkeypatch.setattr(benchmark, '_time_calls', fake_time_calls)
  variant = benchmark.Variant(batch=2, frames=8, num_layers=1)
  row = benchmark.run_variant(variant, repeats=2, steps=1, warmup=0)
  assert row['infer_samples_per_s'] == pytest.approx(4.0)
  assert 'train_samples_per_s' not in row
  assert row['train_error'].startswith('out of memory: RESOURCE_EXHAUSTED')
  cells = benchmark.format_table([row]).splitlines()[-1].split()
  assert cells[8:10] == ['OOM', '4.00'], cells  # train/s, infer/s

  # Any other runtime error is not swallowed.
  def failing(fns, repeats, steps, warmup):
    raise jax.errors.JaxRuntimeError('INTERNAL: something else')

  monkeypatch.setattr(benchmark, '_time_calls', failing)
  with pytest.raises(jax.errors.JaxRuntimeError, match='something else'):
    benchmark.run_variant(variant, repeats=1, steps=1, warmup=0, modes=('infer',))


def test_benchmark_imports_nothing_beyond_jax_flax_optax_numpy_absl():
  code = ('import sys, stbln_jax.benchmark; '
          'print(sorted({m.split(".")[0] for m in sys.modules}))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True).stdout
  for name in ('ml_collections', 'tensorflow_datasets', 'grain', 'tensorflow', 'configs',
               'torch'):
    assert f"'{name}'" not in out, name


def test_retain_freed_memory_is_idempotent_and_can_be_turned_off():
  code = ('from stbln_jax import hostmem; a = hostmem.retain_freed_memory(); '
          'b = hostmem.retain_freed_memory(); print(a, b)')
  on = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  first, second = on.stdout.split()
  assert first == second
  if sys.platform.startswith('linux') and platform.libc_ver()[0] == 'glibc':
    assert first == 'True'
  off = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       env={**os.environ, 'STBLN_JAX_RETAIN_HOST_MEMORY': '0'})
  assert off.stdout.split() == ['False', 'False']
