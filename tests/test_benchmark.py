"""The benchmark: throughput and streaming latency."""

import os
import re
import subprocess
import sys

import jax
import pytest

from benchmarks import model as benchmark
from stbln_jax import models


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
  # The network is the one configs/default.py describes, cut to one layer.
  config = variant.config()
  assert (config.model.arch, config.model.num_layers, config.batch_size,
          config.num_frames) == ('released', 1, 2, 8)
  variables = models.init_variables(models.create_model(config.model), config.model,
                                    jax.random.key(0))
  assert row['params'] == sum(p.size for p in jax.tree.leaves(variables['params']))
  table = benchmark.format_table([row])
  assert 'released bilinear' in table and len(table.splitlines()) == 3


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
  assert cells[9:11] == ['OOM', '4.00'], cells  # train/s, infer/s

  # Any other runtime error is not swallowed.
  def failing(fns, repeats, steps, warmup):
    raise jax.errors.JaxRuntimeError('INTERNAL: something else')

  monkeypatch.setattr(benchmark, '_time_calls', failing)
  with pytest.raises(jax.errors.JaxRuntimeError, match='something else'):
    benchmark.run_variant(variant, repeats=1, steps=1, warmup=0, modes=('infer',))


def test_benchmark_imports_pytorch_only_for_the_reference():
  code = ('import sys, benchmarks.model; '
          'print(sorted({m.split(".")[0] for m in sys.modules}))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True).stdout
  assert "'configs'" in out  # the variants are configs/default.py's
  for name in ('torch', 'tensorflow'):
    assert f"'{name}'" not in out, name


def test_latency_mode_prints_a_row_per_input_and_variant():
  root = os.path.dirname(os.path.dirname(__file__))
  result = subprocess.run(
      [sys.executable, '-m', 'benchmarks.model', '--modes=latency', '--arch=lean',
       '--aggregate_at=1', '--num_layers=2', '--window=12', '--warmup=0', '--calls=3'],
      capture_output=True, text=True, cwd=root, check=True,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  lines = result.stdout.splitlines()
  assert lines[0].startswith('# cpu') and 'load average' in lines[0]
  assert lines[1] == '# batch 1, M=2, window 12 frames, 3 timed calls'
  assert lines[-1].startswith('# load average after')
  rows = lines[2:-1]
  assert [row.split()[:3] for row in rows] == [['lean', 'λ=1', 'auto']] * 3, rows
  assert [re.search(r'(network, 2 persons|network, 1 person|window of a 1-person file)',
                    row).group(1) for row in rows] == [
                        'network, 2 persons', 'network, 1 person', 'window of a 1-person file']
  for row in rows:
    p50, p99, rate = map(float, re.search(r'p50 +([\d.]+) ms +p99 +([\d.]+) ms +([\d.]+) /s',
                                          row).groups())
    # predictions/s = 1000 / p50, up to the rounding of the printed p50 (2 decimals).
    assert 0 < p50 <= p99 and rate * p50 == pytest.approx(1e3, rel=0.005 / p50 + 0.001)
