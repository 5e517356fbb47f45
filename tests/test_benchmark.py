"""The benchmark, bfloat16 compute, the temporal convolutions and host memory."""

import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import model as benchmark
from stbln_jax import mixers
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


def test_bfloat16_logits_agree_with_float32_and_parameters_stay_float32():
  x = jax.random.normal(jax.random.key(1), (4, 16, 2, 25, 3))
  logits = {}
  for dtype in ('float32', 'bfloat16'):
    cfg = benchmark.model_config(num_layers=3, dtype=dtype, num_classes=10)
    model = models.create_model(cfg)
    variables = model.init(jax.random.key(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))
    out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    assert out.dtype == jnp.float32
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates['batch_stats']))
    logits[dtype] = model.apply({**variables, **updates}, x, train=False)
    assert logits[dtype].dtype == jnp.float32
  ref, low = np.asarray(logits['float32']), np.asarray(logits['bfloat16'])
  rel = np.linalg.norm(low - ref) / np.linalg.norm(ref)
  assert rel < 0.03, rel  # bf16 keeps 8 bits of mantissa: ~0.4% per rounding
  assert not np.array_equal(low, ref)  # the bf16 path really computes in bf16


# (frames, kernel taps, stride): odd and even kernels, strides 1-3, clips shorter than
# the kernel (the deepest layers of a short clip), frame counts not divisible by s, and
# clips long enough for 'dft' to work in overlapping blocks (61 frames: 7 blocks of 9,
# the last one partly past the end; stride 2: 4 blocks of 8 frame pairs).
_CONV_CASES = [(11, 9, 1), (11, 9, 2), (12, 9, 2), (17, 9, 3), (3, 9, 1), (4, 9, 2),
               (10, 4, 2), (7, 1, 1), (61, 9, 1), (61, 9, 2)]


def test_dft_works_in_blocks_where_that_saves_multiply_adds():
  # The cases above that exercise the blocks.
  assert models._dft_block(61, 9, 4, 5) == 9
  assert models._dft_block(31, 5, 8, 5) == 8  # stride 2: 31 frame pairs, 8 channels
  assert models._dft_block(11, 9, 4, 5) is None
  # The paper's network at T = 300: blocks in the 64- and 128-channel layers (stride 2
  # included), one transform over the clip in the 256-channel ones.
  assert models._dft_block(300, 9, 64, 64) is not None
  assert models._dft_block(150, 9, 128, 128) is not None
  assert models._dft_block(150, 5, 256, 128) is not None
  assert models._dft_block(75, 9, 256, 256) is None
  for frames, c in ((300, 64), (150, 128)):
    block = models._dft_block(frames, 9, c, c)
    assert (models._dft_macs(frames, 9, c, c, block)
            < 0.8 * models._dft_macs(frames, 9, c, c, None))


def test_dft_takes_one_real_product_where_the_spectrum_of_a_real_signal_is_real():
  x = np.random.default_rng(0).normal(size=40)
  for length in range(1, 41):
    spectrum = np.fft.rfft(x[:length])
    real = int(np.sum(np.abs(spectrum.imag) < 1e-9))
    assert real == (2 if length % 2 == 0 else 1)
    assert models._dft_rows(length) == 3 * (len(spectrum) - real) + real


@pytest.mark.parametrize('taps,stride,length,blocked', [(9, 1, 20, False), (9, 2, 15, True),
                                                        (4, 2, 12, False), (9, 3, 16, True)])
def test_dft_kernel_rows_are_the_grouped_kernels_spectrum_rows(taps, stride, length, blocked):
  # G·w against the rows built from the spectrum of the kernel regrouped into phases, the
  # kernel's circular offset being its left tap (one transform) or 0 (blocks).
  kernel = np.random.default_rng(1).normal(size=(taps, 1, 3, 2))
  _, grouped, left = models._polyphase(jnp.zeros((1, 2 * stride, 1, 3)), jnp.asarray(kernel),
                                       stride)
  h_re, h_im = np.asarray(models._kernel_spectrum(grouped, 0 if blocked else left, length))
  rows = np.stack([h_re, h_im - h_re, h_re + h_im], axis=1).reshape(-1, 3 * stride, 2)
  r = models._dft_rows(length)
  want = np.concatenate([rows[:1], rows[3:r + 2]])
  shift = -left if blocked else 0
  g = models._kernel_rows(taps, stride, shift, length)
  assert g.shape == (r * stride, taps)
  got = (g @ kernel.reshape(taps, -1)).reshape(r, 3 * stride, 2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_frame_range_pads_with_zeros_outside_the_clip():
  x = jnp.arange(1.0, 6.0)[:, None]  # frames 0..4 hold 1..5
  for first, count in [(-2, 4), (-3, 10), (0, 5), (3, 4), (7, 3), (-9, 3), (2, 1)]:
    want = [i + 1.0 if 0 <= i < 5 else 0.0 for i in range(first, first + count)]
    np.testing.assert_array_equal(models._frame_range(x, first, count)[:, 0], want)


@pytest.mark.parametrize('impl', ['dots', 'fft', 'dft'])
@pytest.mark.parametrize('frames,taps,stride', _CONV_CASES)
def test_temporal_conv_matches_xla_convolution_in_value_and_gradient(impl, frames, taps, stride):
  x = jax.random.normal(jax.random.key(0), (2, frames, 3, 4))
  kernel = jax.random.normal(jax.random.key(1), (taps, 1, 4, 5))
  target = jax.random.normal(jax.random.key(2), (2, (frames - 1) // stride + 1, 3, 5))

  def loss(x, kernel, impl):
    return jnp.sum((models.temporal_conv(x, kernel, stride, impl) - target) ** 2)

  y_xla = models.temporal_conv(x, kernel, stride, 'xla')
  y = models.temporal_conv(x, kernel, stride, impl)
  assert y_xla.shape == target.shape == y.shape
  np.testing.assert_allclose(y, y_xla, rtol=1e-5, atol=1e-5)
  g_xla = jax.grad(loss, (0, 1))(x, kernel, 'xla')
  g = jax.grad(loss, (0, 1))(x, kernel, impl)
  for a, b in zip(g, g_xla):
    assert float(jnp.abs(b).max()) > 1e-3
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('impl', ['xla', 'dots', 'fft', 'dft'])
def test_temporal_conv_frames_major_layout_gives_the_same_values_and_gradients(impl):
  x = jax.random.normal(jax.random.key(0), (2, 11, 3, 4))
  kernel = jax.random.normal(jax.random.key(1), (9, 1, 4, 5))

  def conv(x, kernel, time_axis):
    x = x if time_axis == 1 else jnp.swapaxes(x, 0, 1)
    y = models.temporal_conv(x, kernel, 2, impl, time_axis=time_axis)
    return y if time_axis == 1 else jnp.swapaxes(y, 0, 1)

  np.testing.assert_allclose(conv(x, kernel, 0), conv(x, kernel, 1), rtol=1e-5, atol=1e-5)
  g0 = jax.grad(lambda *a: jnp.sum(conv(*a, 0) ** 2), (0, 1))(x, kernel)
  g1 = jax.grad(lambda *a: jnp.sum(conv(*a, 1) ** 2), (0, 1))(x, kernel)
  for a, b in zip(g0, g1):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match='time_axis'):
    models.temporal_conv(x, kernel, 2, impl, time_axis=2)
  with pytest.raises(ValueError, match="unknown temporal convolution 'winograd'"):
    models.temporal_conv(x, kernel, 2, 'winograd')


@pytest.mark.parametrize('first', [1.0, -1.0])
def test_layer_output_relu_has_relu_values_and_gradients_whichever_branch_runs(first):
  y = jax.random.normal(jax.random.key(0), (3, 4, 5)).at[0, 0, 0].set(first)
  g = jax.random.normal(jax.random.key(1), y.shape)
  np.testing.assert_array_equal(models._relu_output(y), jax.nn.relu(y))
  ours = jax.grad(lambda y: jnp.vdot(models._relu_output(y), g))(y)
  ref = jax.grad(lambda y: jnp.vdot(jax.nn.relu(y), g))(y)
  np.testing.assert_array_equal(ours, ref)
  # Layers take this path on CPU, but not with XLA's convolution, where FLOPs are counted.
  assert models.materialize_outputs('dft') and models.materialize_outputs('auto')
  assert not models.materialize_outputs('xla')


def test_rows_matmul_has_the_matmul_gradients():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 4))
  w = jax.random.normal(jax.random.key(1), (4, 6))
  g = jax.random.normal(jax.random.key(2), (2, 5, 3, 6))
  np.testing.assert_allclose(mixers.rows_matmul(x, w), x @ w, rtol=1e-6)
  ours = jax.grad(lambda x, w: jnp.vdot(mixers.rows_matmul(x, w), g), (0, 1))(x, w)
  ref = jax.grad(lambda x, w: jnp.vdot(x @ w, g), (0, 1))(x, w)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_frequency_domain_networks_match_the_direct_convolution_network():
  """The whole network (strided layers included) gives the same logits either way."""
  x = jax.random.normal(jax.random.key(0), (2, 20, 2, 25, 3))
  cfg = benchmark.model_config(num_layers=6, num_classes=10)
  model = models.create_model(cfg)
  variables = model.init(jax.random.key(1), x)
  direct = model.clone(temporal_conv='xla').apply(variables, x)
  for impl in ('fft', 'dft'):
    logits = model.clone(temporal_conv=impl).apply(variables, x)
    np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-4)


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
