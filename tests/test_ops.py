"""The kernels: temporal convolutions, BatchNorm's gradient, rows_matmul, the layer output."""

import contextlib
import io
import re

import flax.linen as nn
import jax
from jax import ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

from stbln_jax import ops
from stbln_jax.ops import temporal

# (frames, kernel taps, stride): odd and even kernels, strides 1-3, clips shorter than
# the kernel (the deepest layers of a short clip), frame counts not divisible by s, and
# clips long enough for 'dft' to work in overlapping blocks (61 frames: 7 blocks of 9,
# the last one partly past the end; stride 2: 4 blocks of 8 frame pairs).
_CONV_CASES = [(11, 9, 1), (11, 9, 2), (12, 9, 2), (17, 9, 3), (3, 9, 1), (4, 9, 2),
               (10, 4, 2), (7, 1, 1), (61, 9, 1), (61, 9, 2)]


def _direct_conv(x, kernel, stride):
  """The frames-major convolution written out: y[t] = Σ_i w[i] x[s·t + i - (k-1)//2]."""
  k = kernel.shape[0]
  left = (k - 1) // 2
  t_out = (x.shape[0] - 1) // stride + 1
  xp = np.pad(x, [(left, k)] + [(0, 0)] * 3)
  return np.stack([sum(xp[stride * t + i] @ kernel[i, 0] for i in range(k))
                   for t in range(t_out)])


@pytest.mark.parametrize('frames,taps,stride', _CONV_CASES)
def test_dft_temporal_conv_matches_xla_convolution_in_value_and_gradient(frames, taps, stride):
  x = jax.random.normal(jax.random.key(0), (frames, 2, 3, 4))
  kernel = jax.random.normal(jax.random.key(1), (taps, 1, 4, 5))
  target = jax.random.normal(jax.random.key(2), ((frames - 1) // stride + 1, 2, 3, 5))

  def loss(x, kernel, impl):
    return jnp.sum((ops.temporal_conv(x, kernel, stride, impl) - target) ** 2)

  y_xla = ops.temporal_conv(x, kernel, stride, 'xla')
  y = ops.temporal_conv(x, kernel, stride, 'dft')
  assert y_xla.shape == target.shape == y.shape
  np.testing.assert_allclose(y_xla, _direct_conv(np.asarray(x), np.asarray(kernel), stride),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(y, y_xla, rtol=1e-5, atol=1e-5)
  g_xla = jax.grad(loss, (0, 1))(x, kernel, 'xla')
  g = jax.grad(loss, (0, 1))(x, kernel, 'dft')
  for a, b in zip(g, g_xla):
    assert float(jnp.abs(b).max()) > 1e-3
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_implementation_is_chosen_once_for_a_block_of_code():
  x = jnp.ones((6, 1, 2, 3))
  kernel = jnp.ones((3, 1, 3, 2))
  assert ops.current_temporal_conv() == ops.resolve_temporal_conv('auto') == 'dft'  # on CPU
  with ops.use_temporal_conv('xla'):
    assert ops.current_temporal_conv() == 'xla'
    # Layers take the materialised ReLU on CPU, but not with XLA's convolution, where
    # FLOPs are counted.
    assert not ops.materialize_outputs()
    jaxpr = str(jax.make_jaxpr(lambda x: ops.temporal_conv(x, kernel))(x))
    assert 'conv_general_dilated' in jaxpr
  assert ops.current_temporal_conv() == 'dft' and ops.materialize_outputs()
  assert 'conv_general_dilated' not in str(jax.make_jaxpr(lambda x: ops.temporal_conv(x, kernel))(x))
  with pytest.raises(ValueError, match="unknown temporal convolution 'winograd'"):
    ops.temporal_conv(x, kernel, 1, 'winograd')
  with pytest.raises(ValueError, match="unknown temporal convolution 'fft'"):
    with ops.use_temporal_conv('fft'):
      pass


def test_dft_works_in_blocks_where_that_saves_multiply_adds():
  # The cases above that exercise the blocks.
  assert temporal.dft_block(61, 9, 4, 5) == 9
  assert temporal.dft_block(31, 5, 8, 5) == 8  # stride 2: 31 frame pairs, 8 channels
  assert temporal.dft_block(11, 9, 4, 5) is None
  # The paper's network at T = 300: blocks in the 64- and 128-channel layers (stride 2
  # included), one transform over the clip in the 256-channel ones.
  assert temporal.dft_block(300, 9, 64, 64) is not None
  assert temporal.dft_block(150, 9, 128, 128) is not None
  assert temporal.dft_block(150, 5, 256, 128) is not None
  assert temporal.dft_block(75, 9, 256, 256) is None
  for frames, c in ((300, 64), (150, 128)):
    block = temporal.dft_block(frames, 9, c, c)
    assert (temporal.dft_macs(frames, 9, c, c, block)
            < 0.8 * temporal.dft_macs(frames, 9, c, c, None))


def test_dft_takes_one_real_product_where_the_spectrum_of_a_real_signal_is_real():
  x = np.random.default_rng(0).normal(size=40)
  for length in range(1, 41):
    spectrum = np.fft.rfft(x[:length])
    real = int(np.sum(np.abs(spectrum.imag) < 1e-9))
    assert real == (2 if length % 2 == 0 else 1)
    assert temporal.dft_rows(length) == 3 * (len(spectrum) - real) + real


def _grouped_kernel_spectrum(kernel, stride, length, offset):
  """Spectrum (re, im) of the kernel regrouped into phases, placed at circular `offset`.

  Tap i reads phase b of the frame group t + a, i - (k-1)//2 = s·a + b; the grouped
  kernel's channels are phase-major. Also returns -a_min, its left offset.
  """
  k, _, c, d = kernel.shape
  a, b = np.divmod(np.arange(k) - (k - 1) // 2, stride)
  grouped = np.zeros((a[-1] - a[0] + 1, stride * c, d))
  for i in range(k):
    grouped[a[i] - a[0], b[i] * c:(b[i] + 1) * c] = kernel[i, 0]
  left = -a[0]
  offset = left if offset is None else offset
  angle = 2 * np.pi * np.outer(np.arange(length // 2 + 1), np.arange(len(grouped)) - offset)
  h = np.einsum('fj,jcd->fcd', np.exp(1j * angle / length), grouped)
  return h.real, h.imag, left


@pytest.mark.parametrize('taps,stride,length,blocked', [(9, 1, 20, False), (9, 2, 15, True),
                                                        (4, 2, 12, False), (9, 3, 16, True)])
def test_dft_kernel_rows_are_the_grouped_kernels_spectrum_rows(taps, stride, length, blocked):
  # G·w against the rows built from the spectrum of the kernel regrouped into phases, the
  # kernel's circular offset being its left tap (one transform) or 0 (blocks).
  kernel = np.random.default_rng(1).normal(size=(taps, 1, 3, 2))
  h_re, h_im, left = _grouped_kernel_spectrum(kernel, stride, length, 0 if blocked else None)
  rows = np.stack([h_re, h_im - h_re, h_re + h_im], axis=1).reshape(-1, 3 * stride, 2)
  r = temporal.dft_rows(length)
  want = np.concatenate([rows[:1], rows[3:r + 2]])
  shift = -left if blocked else 0
  g = temporal.kernel_rows(taps, stride, shift, length)
  assert g.shape == (r * stride, taps)
  got = (g @ kernel.reshape(taps, -1)).reshape(r, 3 * stride, 2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_frame_range_pads_with_zeros_outside_the_clip():
  x = jnp.arange(1.0, 6.0)[:, None]  # frames 0..4 hold 1..5
  for first, count in [(-2, 4), (-3, 10), (0, 5), (3, 4), (7, 3), (-9, 3), (2, 1)]:
    want = [i + 1.0 if 0 <= i < 5 else 0.0 for i in range(first, first + count)]
    np.testing.assert_array_equal(temporal.frame_range(x, first, count)[:, 0], want)


@pytest.mark.parametrize('first', [1.0, -1.0])
def test_layer_output_relu_has_relu_values_and_gradients_whichever_branch_runs(first):
  y = jax.random.normal(jax.random.key(0), (3, 4, 5)).at[0, 0, 0].set(first)
  g = jax.random.normal(jax.random.key(1), y.shape)
  assert ops.materialize_outputs()
  np.testing.assert_array_equal(ops.layer_output(y), jax.nn.relu(y))
  ours = jax.grad(lambda y: jnp.vdot(ops.layer_output(y), g))(y)
  ref = jax.grad(lambda y: jnp.vdot(jax.nn.relu(y), g))(y)
  np.testing.assert_array_equal(ours, ref)


def test_rows_matmul_has_the_matmul_gradients():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 4))
  w = jax.random.normal(jax.random.key(1), (4, 6))
  g = jax.random.normal(jax.random.key(2), (2, 5, 3, 6))
  np.testing.assert_allclose(ops.rows_matmul(x, w), x @ w, rtol=1e-6)
  ours = jax.grad(lambda x, w: jnp.vdot(ops.rows_matmul(x, w), g), (0, 1))(x, w)
  ref = jax.grad(lambda x, w: jnp.vdot(x @ w, g), (0, 1))(x, w)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ---- BatchNorm ----------------------------------------------------------------------

def _bn_loss(module, variables, weights):
  """A loss of a BN's output and of its updated batch statistics, so both carry gradients."""

  def loss(params, x):
    y, updates = module.apply({'params': params, 'batch_stats': variables['batch_stats']},
                              x, mutable=['batch_stats'])
    stats = updates['batch_stats']
    return (jnp.sum(y.astype(jnp.float32) * weights)
            + jnp.sum(3.0 * stats['mean'] + stats['var'] ** 2)), stats

  return loss


def test_batch_norm_computes_what_flax_batch_norm_computes():
  x = 3.0 * jax.random.normal(jax.random.key(0), (4, 7, 5, 6)) + 1.0
  weights = jax.random.normal(jax.random.key(1), x.shape)
  ours = ops.BatchNorm(use_running_average=False, scale_init_value=0.7)
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5,
                         scale_init=nn.initializers.constant(0.7))
  variables = ours.init(jax.random.key(2), x)
  # The same variables, so checkpoints of either load into the other.
  assert (jax.tree.map(jnp.shape, variables)
          == jax.tree.map(jnp.shape, flax_bn.init(jax.random.key(2), x)))
  np.testing.assert_allclose(variables['params']['scale'], 0.7)
  params = {'scale': jnp.linspace(0.5, 1.5, 6), 'bias': jnp.linspace(-1.0, 1.0, 6)}
  grad = jax.value_and_grad(_bn_loss(ours, variables, weights), (0, 1), has_aux=True)
  flax_grad = jax.value_and_grad(_bn_loss(flax_bn, variables, weights), (0, 1), has_aux=True)
  (loss, stats), grads = grad(params, x)
  (flax_loss, flax_stats), flax_grads = flax_grad(params, x)
  np.testing.assert_allclose(loss, flax_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves((stats, grads)), jax.tree.leaves((flax_stats, flax_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Evaluation mode normalises with the running statistics.
  trained = {'params': params, 'batch_stats': stats}
  np.testing.assert_allclose(
      ops.BatchNorm(use_running_average=True).apply(trained, x),
      nn.BatchNorm(use_running_average=True, epsilon=1e-5).apply(trained, x), rtol=1e-6,
      atol=1e-6)


def _saved_residual_bytes(fn, *args) -> list[tuple[str, int]]:
  """(dtype, bytes) of every array `fn`'s gradient keeps from its forward pass."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    ad_checkpoint.print_saved_residuals(fn, *args)
  sizes = []
  for dtype, dims in re.findall(r'^(\w+)\[([\d,]*)\]', out.getvalue(), re.M):
    sizes.append((dtype, int(np.prod([int(d) for d in dims.split(',') if d]))
                  * {'f32': 4, 'bf16': 2}.get(dtype, 1)))
  return sizes


def test_batch_norm_gradient_keeps_only_its_input_in_the_compute_dtype():
  x = jax.random.normal(jax.random.key(0), (4, 7, 5, 16), jnp.bfloat16)
  weights = jnp.float32(1.0)  # a scalar: the loss itself keeps nothing of x's size
  sizes = {}
  for name, module in [
      ('ours', ops.BatchNorm(use_running_average=False, dtype=jnp.bfloat16)),
      ('flax', nn.BatchNorm(use_running_average=False, dtype=jnp.bfloat16))]:
    variables = module.init(jax.random.key(1), x)
    loss = _bn_loss(module, variables, weights)
    sizes[name] = _saved_residual_bytes(lambda p, x: loss(p, x)[0], variables['params'], x)
  big = [(dtype, b) for dtype, b in sizes['ours'] if b >= x.size]
  assert big == [('bf16', 2 * x.size)]  # the input, nothing else of its size
  # flax keeps two float32 arrays of x's size: about four times the bytes.
  assert sum(b for _, b in sizes['flax']) >= 3.5 * sum(b for _, b in sizes['ours'])
