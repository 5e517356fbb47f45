"""The network: ST layers (Fig. 2), aggregated layers (Fig. 3) and the classifier.

Tensors inside the network are channels-last, (N·M, T, V, C): persons folded into the
batch, then frames, nodes (joints) and channels; with the 'dft' temporal convolution
(the CPU default) they are frames-major, (T, N·M, V, C), which spares that convolution
its transposes. The public input is a batch of skeleton sequences (N, T, M, V, C) =
(samples, frames, persons, joints, coordinates).

Choices the paper leaves open (SPEC, written down here):
- No biases in convolutions or mixers: every one is followed by a BatchNorm.
- The BN after the spatial sum of an ST layer starts with scale 1e-6 (as 2s-AGCN), so
  each layer starts close to its residual path. Aggregated layers (Fig. 3) have no
  Residual/V, so their BN starts at scale 1.
- BN momentum 0.9 (PyTorch's 0.1) and ε = 1e-5.
- λ (`aggregate_at`) counts layers of the full layer list: a network cut to its first
  k layers (Table II) with k < λ never aggregates.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stbln_jax import graph
from stbln_jax import mixers

Array = jax.Array
Dtype = Any

_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5
_SPATIAL_BN_SCALE = 1e-6


class ConfigError(ValueError):
  """A model or training configuration that cannot work, with what to change."""


def _bn_statistics(x: Array) -> tuple[Array, Array]:
  """Per-channel mean and (biased) variance over all axes but the last, in float32."""
  x = x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  # E[x²] - E[x]², clipped at 0, as flax's BatchNorm computes it.
  var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train(x: Array, scale: Array, bias: Array, eps: float):
  """Training-mode BN over the last axis: (normalised x · scale + bias, mean, var)."""
  return _bn_train_fwd(x, scale, bias, eps)[0]


def _bn_train_fwd(x, scale, bias, eps):
  mean, var = _bn_statistics(x)
  inv = jax.lax.rsqrt(var + eps)
  y = (x.astype(jnp.float32) - mean) * (scale * inv) + bias
  # Only the input (in its own dtype) and per-channel vectors are kept for the
  # backward pass, which recomputes the normalised input from them.
  return (y.astype(x.dtype), mean, var), (x, mean, inv, scale)


def _bn_train_bwd(eps, residuals, cotangents):
  del eps
  x, mean, inv, scale = residuals
  dy, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  centred = x.astype(jnp.float32) - mean
  x_hat = centred * inv
  g = dy.astype(jnp.float32)
  dbias = jnp.sum(g, axes)
  dscale = jnp.sum(g * x_hat, axes)
  # d/dx of mean and of the biased variance, for whatever uses the batch statistics.
  dx = (scale * inv) * (g - (dbias + x_hat * dscale) / count)
  dx = dx + (dmean + 2.0 * dvar * centred) / count
  return dx.astype(x.dtype), dscale, dbias


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BatchNorm(nn.Module):
  """BatchNorm over the last axis, with a hand-written gradient.

  The same computation and variables as `flax.linen.BatchNorm(axis=-1)` (params
  'scale' and 'bias', batch_stats 'mean' and 'var', float32 statistics and parameters,
  the output in `dtype`). flax's gradient is what autodiff derives from its forward
  pass, which keeps two float32 arrays of the input's size (from x - mean and from the
  E[x²] of the variance) and sums over the batch in several passes. This one keeps the input alone, in the dtype it comes in,
  and computes dx in one elementwise pass after two per-channel sums (BENCHMARKS.md,
  attempt 15).
  """
  use_running_average: bool
  dtype: Dtype = jnp.float32
  scale_init_value: float = 1.0
  momentum: float = _BN_MOMENTUM
  epsilon: float = _BN_EPS

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.constant(self.scale_init_value), (c,),
                       jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    x = x.astype(self.dtype)
    if self.use_running_average:
      mul = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
      y = (x.astype(jnp.float32) - ra_mean.value) * mul + bias
      return y.astype(self.dtype)
    y, mean, var = _bn_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y


def _batch_norm(train: bool, dtype: Dtype, scale: float = 1.0,
                name: str | None = None) -> BatchNorm:
  return BatchNorm(use_running_average=not train, dtype=dtype, scale_init_value=scale,
                   name=name)


def _kaiming_fan_out():
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _temporal_conv_xla(x: Array, kernel: Array, stride: int) -> Array:
  k = kernel.shape[0]
  pad = (k - 1) // 2
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(stride, 1), padding=((pad, k - 1 - pad), (0, 0)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _temporal_conv_dots(x: Array, kernel: Array, stride: int) -> Array:
  return _temporal_conv_xla(x, kernel, stride)


def _temporal_conv_dots_fwd(x, kernel, stride):
  return _temporal_conv_xla(x, kernel, stride), (x, kernel)


def _temporal_conv_dots_bwd(stride, residuals, dy):
  x, kernel = residuals
  # dL/dx is a convolution that XLA's CPU backend runs well; dL/dW is not (XLA makes
  # it a convolution whose window is the whole batch), so it is one matrix product:
  # the k shifted copies of x side by side, (N·T'·V, k·C), transposed, times dy.
  _, x_vjp = jax.vjp(lambda x: _temporal_conv_xla(x, kernel, stride), x)
  (dx,) = x_vjp(dy)
  k, _, c, d = kernel.shape
  pad = (k - 1) // 2
  t_out = dy.shape[1]
  xp = jnp.pad(x, ((0, 0), (pad, k - 1 - pad), (0, 0), (0, 0)))
  cols = jnp.concatenate([xp[:, i:i + stride * (t_out - 1) + 1:stride] for i in range(k)],
                         axis=-1)
  dw = jnp.dot(cols.reshape(-1, k * c).T, dy.reshape(-1, d),
               preferred_element_type=jnp.float32)
  return dx, dw.reshape(k, 1, c, d).astype(kernel.dtype)


_temporal_conv_dots.defvjp(_temporal_conv_dots_fwd, _temporal_conv_dots_bwd)


def _fft_length(n: int) -> int:
  """The smallest 2^a·3^b·5^c ≥ n (lengths the FFT handles fastest)."""
  m = n
  while True:
    r = m
    for p in (2, 3, 5):
      while r % p == 0:
        r //= p
    if r == 1:
      return m
    m += 1


def _phase_taps(k: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  """(a, b) per tap i of a k-tap kernel with i - left = s·a + b, 0 ≤ b < s, left = (k-1)//2.

  Tap i of a stride-s convolution, y[t] = Σ_i w[i] x[s·t + i - left], reads phase b of
  the frame group t + a (`_phase_groups`).
  """
  return np.divmod(np.arange(k) - (k - 1) // 2, stride)


def _phase_groups(x: Array, stride: int, time_axis: int = 1) -> Array:
  """Groups of s frames on the channel axis: x'[τ] = (x[s·τ], ..., x[s·τ + s - 1]).

  `x` is (N, T, V, C) with `time_axis=1` or (T, N, V, C) with 0; returns the same layout
  with ceil(T/s) frames (the last group zero-padded) and s·C channels, phase-major.
  """
  t = x.shape[time_axis]
  t_out = -(-t // stride)
  pad = [(0, 0)] * 4
  pad[time_axis] = (0, t_out * stride - t)
  x = jnp.pad(x, pad)
  shape = list(x.shape)
  shape[time_axis:time_axis + 1] = [t_out, stride]
  x = jnp.moveaxis(x.reshape(shape), time_axis + 1, -2)  # the phase next to the channels
  return x.reshape(*x.shape[:-2], -1)


def _polyphase(x: Array, kernel: Array, stride: int, time_axis: int = 1):
  """A stride-s convolution as a stride-1 convolution over groups of s frames.

  y[t] = Σ_i w[i] x[s·t + i - left]. Writing i - left = s·a + b (0 ≤ b < s) makes it
  y[t] = Σ_a w'[a] x'[t + a] with x' = `_phase_groups(x)` (s·C channels) and w'[a] the
  matching (s·C, D) block of taps, zero where s·a + b + left falls outside the kernel.
  Returns x', w' and the new left offset.
  """
  k, _, _, d = kernel.shape
  a, _ = _phase_taps(k, stride)
  taps = a[-1] - a[0] + 1
  first = stride * a[0] + (k - 1) // 2  # kernel index of w'[0]'s first phase (≤ 0)
  kernel = jnp.pad(kernel, ((-first, taps * stride - k + first), (0, 0), (0, 0), (0, 0)))
  kernel = kernel.reshape(taps, 1, stride * kernel.shape[2], d)
  return _phase_groups(x, stride, time_axis), kernel, int(-a[0])


def _stride_one(x: Array, kernel: Array, stride: int, time_axis: int = 1):
  """(x, kernel, left, min_length) of the equivalent stride-1 convolution.

  y[t] = Σ_i w[i] x[t + i - left]; `min_length` is the shortest transform length L at
  which the circular convolution over L frames never wraps around: L ≥ T + k/2 and ≥ k.
  """
  k = kernel.shape[0]
  left = (k - 1) // 2
  if stride > 1:
    x, kernel, left = _polyphase(x, kernel, stride, time_axis)
    k = kernel.shape[0]
  return x, kernel, left, max(x.shape[time_axis] + max(left, k - 1 - left), k)


def _kernel_spectrum(kernel: Array, left: int, length: int) -> Array:
  """H[f] = Σ_i w[i] exp(2πi·f·(i - left)/L) for f = 0..L/2, as (2, F, C, D): re, im.

  The DFT of the kernel placed circularly (h[s mod L] = w[left - s]). With k taps this is
  one small (2F × k)·(k × C·D) product, cheaper than an FFT of the zero-padded kernel and
  already frequency-major.
  """
  k, _, c, d = kernel.shape
  angle = 2 * np.pi * np.outer(np.arange(length // 2 + 1), np.arange(k) - left) / length
  dft = jnp.asarray(np.concatenate([np.cos(angle), np.sin(angle)]), jnp.float32)
  return jnp.dot(dft, kernel[:, 0].reshape(k, c * d).astype(jnp.float32),
                 precision=jax.lax.Precision.HIGHEST).reshape(2, -1, c, d)


def _temporal_conv_fft(x: Array, kernel: Array, stride: int) -> Array:
  """The same convolution through the FFT over frames: exact up to float rounding.

  y = x ⊛ h is computed as irfft(rfft(x) · rfft(h)) with both zero-padded to a length
  L ≥ max(T + k/2, k), long enough that the circular convolution never wraps around; per
  frequency the channel mixing is one complex (C × D) product. A k-tap convolution
  over T frames costs T·k multiply-adds per (C, D) pair directly and 4·(L/2 + 1) here.
  """
  x, kernel, left, min_length = _stride_one(x, kernel, stride)
  t = x.shape[1]
  length = _fft_length(min_length)
  spec = _kernel_spectrum(kernel, left, length)
  h_f = jax.lax.complex(spec[0], spec[1])  # (F, C, D)
  x_f = jnp.fft.rfft(jnp.transpose(x, (0, 2, 3, 1)).astype(jnp.float32), n=length,
                     axis=-1)  # (N, V, C, F)
  y_f = jnp.einsum('nvcf,fcd->nvdf', x_f, h_f)
  y = jnp.fft.irfft(y_f, n=length, axis=-1)[..., :t]  # (N, V, D, T)
  return jnp.transpose(y, (0, 3, 1, 2)).astype(x.dtype)


def _dft_macs(frames: int, taps: int, c: int, d: int, block: int | None) -> int:
  """Multiply-adds per node of 'dft' over `frames` frames, in blocks or in one piece.

  With R = `_dft_rows(L)` real products (three per frequency, one at the real ones) the
  transforms cost R·L·C and B·R·D per piece of B output frames read from L input frames,
  the products R·C·D. One piece has B = T and L = T + k/2; overlapping blocks have
  L = B + k - 1 and ceil(T/B) pieces.
  """
  if block is None:
    pieces, out, length = 1, frames, frames + taps // 2
  else:
    pieces, out, length = -(-frames // block), block, block + taps - 1
  return pieces * _dft_rows(length) * (length * c + c * d + out * d)


def _dft_rows(length: int) -> int:
  """Real products per channel pair in 'dft' over L frames.

  Three per frequency, F = L/2 + 1 of them, and one at the frequencies where the DFT of
  a real signal is real: 0 and, for even L, L/2.
  """
  real = 2 if length % 2 == 0 else 1
  return 3 * (length // 2 + 1) - 2 * real


def _live_rows(length: int) -> np.ndarray:
  """The `_dft_rows(L)` rows 'dft' keeps of its 3F rows (frequency, k1/k2/k3): 0, 3 .. R + 1.

  k2 and k3 are dead at f = 0 and, for even L, at the last frequency (`_temporal_conv_dft`).
  """
  return np.r_[0, 3:_dft_rows(length) + 2]


def _dft_block(frames: int, taps: int, c: int, d: int) -> int | None:
  """Output frames per block for 'dft', or None for one transform over the whole clip.

  Overlap-save: short blocks make the transforms ≈ L²/B instead of ≈ T per frame and
  channel, at the price of more frequencies per output frame in the products (≈ (B + k)/2B
  instead of ≈ 1/2) and a copy of the overlapping windows. Blocks are taken when they save
  at least a fifth of the multiply-adds: the 64- and 128-channel layers of a 300-frame clip,
  the 64-channel ones of a 64-frame clip.
  """
  best = min(range(taps, max(frames // 2, taps) + 1),
             key=lambda b: _dft_macs(frames, taps, c, d, b))
  if 5 * _dft_macs(frames, taps, c, d, best) < 4 * _dft_macs(frames, taps, c, d, None):
    return best
  return None


def _frame_range(x: Array, first: int, count: int) -> Array:
  """Frames first .. first + count - 1 of frames-major `x`, zeros outside the clip."""
  before = min(max(-first, 0), count)
  after = min(max(first + count - x.shape[0], 0), count - before)
  start = first + before
  inside = x[start:start + count - before - after]
  return jnp.pad(inside, [(before, after)] + [(0, 0)] * (x.ndim - 1))


def _overlapping_windows(x: Array, offset: int, block: int, length: int,
                         blocks: int) -> Array:
  """(length, blocks, ...) with [l, j] = x[j·block + l - offset] (zero outside the clip).

  Frames-major. Built from reshapes and transposes of whole frames (and not `length`
  strided slices) so that the gradient is as cheap as the forward copy, with each part
  padded on its own so that XLA fuses the padding into the copy.
  """
  parts = []
  for start in range(0, length, block):
    segment = _frame_range(x, start - offset, blocks * block)
    segment = segment.reshape(blocks, block, *x.shape[1:])
    parts.append(jnp.swapaxes(segment[:, :min(block, length - start)], 0, 1))
  return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _kernel_rows(kernel_size: int, stride: int, shift: int, length: int) -> np.ndarray:
  """G, (R·s, k), with G·w the kernel's rows of the product per frequency in 'dft'.

  w is the kernel as (k, C·D). Tap i (group offset a_i, phase b_i, `_phase_taps`) sits at
  circular offset a_i - shift in L frames, so the spectrum of phase b's (C, D) block is
  H_b[f] = Σ_{i: b_i = b} w[i] exp(2πi·f·(a_i - shift)/L), and 'dft' multiplies by the
  rows H_re, H_im - H_re and H_re + H_im of each frequency, less the two dead ones at each
  real frequency (`_dft_rows`). Row ρ·s + b of G gives row ρ for phase b, so that G·w
  reshapes to (R, s·C, D) in the order of `_phase_groups`' channels.
  """
  a, b = _phase_taps(kernel_size, stride)
  angle = 2 * np.pi * np.outer(np.arange(length // 2 + 1), a - shift) / length
  re, im = np.cos(angle), np.sin(angle)
  rows = np.stack([re, im - re, re + im], axis=1).reshape(-1, kernel_size)
  rows = rows[_live_rows(length)]
  r = len(rows)
  g = np.zeros((r, stride, kernel_size))
  g[:, b, np.arange(kernel_size)] = rows
  return g.reshape(r * stride, kernel_size)


def _temporal_conv_dft(x: Array, kernel: Array, stride: int) -> Array:
  """The same product per frequency as 'fft', with the transforms done as matrix products.

  Takes and returns frames-major activations, (T, N, V, C) → (ceil(T/s), N, V, D). The
  DFT over frames is an (R × T) matrix (three real rows per frequency, one at the real
  frequencies, see below) and its inverse a (T × R) one, so the whole convolution is
  three matrix products with no FFT: X = D·x, the products per frequency (one batched
  product), y = E·Y. Where it saves multiply-adds (`_dft_block`) the clip is cut into
  blocks of B output frames, each transformed with the k - 1 frames it overlaps its
  neighbours by (overlap-save): the blocks sit side by side in the columns of the same
  three products.
  """
  # A stride-s convolution runs as a stride-1 one over groups of s frames (s·C channels,
  # `_phase_groups`) with taps a_min .. a_max: y[t] = Σ_a w'[a] x'[t + a].
  kernel_size, _, c_in, d = kernel.shape
  offsets, _ = _phase_taps(kernel_size, stride)
  a_min, a_max = int(offsets[0]), int(offsets[-1])
  k = a_max - a_min + 1
  if stride > 1:
    x = _phase_groups(x, stride, time_axis=0)
  t, n, v, c = x.shape
  # One transform over the clip, long enough that the circular convolution never wraps.
  length = max(t + max(-a_min, a_max), k)
  shift = 0  # tap group a sits at circular offset a - shift (`_kernel_rows`)
  block = _dft_block(t, k, c, d)
  if block is None:
    blocks, out_frames = 1, t
  else:
    # Block j computes y[jB + u] = Σ_a w'[a] x'[jB + u + a] for u < B from the window
    # x'[jB + a_min, jB + a_min + L): a circular convolution of length L = B + k - 1
    # that never wraps for those u, with the kernel placed at offset 0.
    blocks, out_frames, length = -(-t // block), block, block + k - 1
    x = _overlapping_windows(x, -a_min, block, length, blocks)  # (L, blocks, N, V, C)
    shift = a_min
  in_frames = x.shape[0]
  f = length // 2 + 1
  freqs = np.arange(f)
  # The product per frequency, X·H with X = A + iB and H = H_re + iH_im, takes three real
  # products instead of four: k1 = (A + B)·H_re, k2 = A·(H_im - H_re), k3 = B·(H_re + H_im)
  # give Y_re = k1 - k3 and Y_im = k1 + k2. The forward DFT computes A + B, A and B
  # (rows (frequency, 3)), and the inverse takes k1, k2, k3 as they come:
  # y = Σ_f E_re·Y_re + E_im·Y_im = Σ_f (E_re + E_im)·k1 + E_im·k2 - E_re·k3.
  angle = 2 * np.pi * np.outer(freqs, np.arange(in_frames)) / length
  a, b = np.cos(angle), -np.sin(angle)  # A = Σ_t x cos(2πft/L), B = -Σ_t x sin(2πft/L)
  dft = np.stack([a + b, a, b], axis=1).reshape(3 * f, in_frames)
  # Inverse real DFT for the output frames: weights 1/L for f = 0 and L/2, 2/L otherwise.
  weight = np.full(f, 2.0 / length)
  weight[0] = 1.0 / length
  if length % 2 == 0:
    weight[-1] = 1.0 / length
  angle = 2 * np.pi * np.outer(np.arange(out_frames), freqs) / length
  e_re, e_im = np.cos(angle) * weight, -np.sin(angle) * weight
  idft = np.stack([e_re + e_im, e_im, -e_re], axis=2).reshape(out_frames, 3 * f)
  # At the real frequencies (f = 0 and, for even L, f = L/2) B, H_im and E_im vanish, so
  # k1 = A·H_re is the whole product: k2 and k3 (rows 1, 2 and, for even L, the last
  # two) are left out, which keeps rows 0 and 3 .. r + 1.
  live = _live_rows(length)
  r = len(live)
  dft, idft = dft[live], idft[:, live]
  # The kernel's rows H_re, H_im - H_re, H_re + H_im, in the grouped channels' order,
  # straight from the kernel as one product (`_kernel_rows`).
  g = jnp.asarray(_kernel_rows(kernel_size, stride, shift, length), jnp.float32)  # (R·s, k)
  h = jnp.dot(g, kernel.reshape(kernel_size, c_in * d).astype(jnp.float32),
              precision=jax.lax.Precision.HIGHEST).reshape(r, c, d)

  dtype = x.dtype
  rows = blocks * n * v
  xs = jnp.dot(jnp.asarray(dft, dtype), x.reshape(in_frames, rows * c))
  prods = jax.lax.dot_general(xs.reshape(r, rows, c), h.astype(dtype),
                              (((2,), (1,)), ((0,), (0,))))  # (R, rows, D): k1, k2, k3
  y = jnp.dot(jnp.asarray(idft, dtype), prods.reshape(r, rows * d))
  y = y.reshape(out_frames, blocks, n, v, d)
  if blocks == 1:
    return y.reshape(t, n, v, d)
  return jnp.swapaxes(y, 0, 1).reshape(blocks * out_frames, n, v, d)[:t]


TEMPORAL_CONV_IMPLS = ('auto', 'dft', 'fft', 'dots', 'xla')


def resolve_temporal_conv(impl: str) -> str:
  """The implementation 'auto' stands for on this backend."""
  if impl != 'auto':
    return impl
  return 'dft' if jax.default_backend() == 'cpu' else 'xla'


def frames_major(impl: str) -> bool:
  """Whether the network keeps its activations frames-major, (T, N·M, V, C).

  'dft' transforms over the leading axis, so with frames first it needs no transposes;
  the other implementations convolve (N·M, T, V, C).
  """
  return resolve_temporal_conv(impl) == 'dft'


def temporal_conv(x: Array, kernel: Array, stride: int = 1, impl: str = 'auto',
                  time_axis: int = 1) -> Array:
  """The k×1 convolution over frames, 'same' padding: (N, T, V, C) → (N, ceil(T/s), V, D).

  `kernel` is (k, 1, C, D); with `time_axis=0` the activations are frames-major,
  (T, N, V, C) → (ceil(T/s), N, V, D). The implementations compute the same values and
  gradients (up to float rounding):
    'xla'   `lax.conv_general_dilated` with XLA's own gradient;
    'dots'  the same forward pass and input gradient, the kernel gradient as one matrix
            product (XLA's CPU backend runs its own kernel gradient slowly);
    'fft'   a product per frequency between FFTs over frames (≈4× fewer multiply-adds
            for k = 9);
    'dft'   the same product per frequency with the DFT and its inverse as matrix
            products on frames-major data, over overlapping blocks of frames where
            that saves multiply-adds: no FFT and no transposes, the fastest on CPU;
    'auto'  'dft' on CPU, 'xla' elsewhere (GPU and TPU convolutions are fast).
  'fft' and 'dft' run a stride-s convolution as a stride-1 one over groups of s frames.
  'dft' works frames-major and the others batch-major: the other layout costs a
  transpose on each side. BENCHMARKS.md has the measurements.
  """
  if time_axis not in (0, 1):
    raise ValueError(f'time_axis must be 0 (frames-major) or 1, got {time_axis}')
  impl = resolve_temporal_conv(impl)
  convs = {'dft': _temporal_conv_dft, 'fft': _temporal_conv_fft, 'dots': _temporal_conv_dots,
           'xla': _temporal_conv_xla}
  if impl not in convs:
    raise ValueError(f'unknown temporal convolution {impl!r}; choose one of {TEMPORAL_CONV_IMPLS}')
  native_time_axis = 0 if impl == 'dft' else 1
  if time_axis == native_time_axis:
    return convs[impl](x, kernel, stride)
  return jnp.swapaxes(convs[impl](jnp.swapaxes(x, 0, 1), kernel, stride), 0, 1)


class _ConvKernel(nn.Module):
  """Holds the k×1 kernel under the name nn.Conv uses ('kernel', shape (k, 1, C, D))."""
  features: int
  kernel_size: int
  stride: int
  impl: str
  dtype: Dtype
  time_axis: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', _kaiming_fan_out(),
                        (self.kernel_size, 1, x.shape[-1], self.features), jnp.float32)
    return temporal_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride,
                         self.impl, self.time_axis)


class TemporalConv(nn.Module):
  """Convolution over frames with a k×1 kernel, 'same' padding and stride s.

  (N, T, V, C_in) → (N, ceil(T/s), V, C_out), or frames-major with `time_axis=0`;
  each node is convolved independently.
  """
  features: int
  kernel_size: int = 9
  stride: int = 1
  dtype: Dtype = jnp.float32
  impl: str = 'auto'
  time_axis: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return _ConvKernel(self.features, self.kernel_size, self.stride, self.impl, self.dtype,
                       self.time_axis, name='conv')(x)


class Linear(nn.Module):
  """A bias-free channel map x · W (W: 'kernel', (C_in, C_out), as nn.Dense names it).

  Its kernel gradient runs without a transposed copy of the incoming gradient on XLA's
  CPU backend (`mixers.rows_matmul`).
  """
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', _kaiming_fan_out(), (x.shape[-1], self.features),
                        jnp.float32)
    return mixers.rows_matmul(x.astype(self.dtype), kernel.astype(self.dtype))


class NodeChannelMap(nn.Module):
  """Maps (V_in, C_in) to (V_out, C_out) per frame: the residual when V changes.

  The paper's C_out·V_out filters of size C_in×1×V_in, i.e. a dense layer on the
  flattened (V_in·C_in) features of each frame, reshaped to (V_out, C_out).
  """
  num_nodes: int
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    lead, (v, c) = x.shape[:-2], x.shape[-2:]
    y = Linear(self.num_nodes * self.features, self.dtype, name='dense')(
        x.reshape(*lead, v * c))
    return y.reshape(*lead, self.num_nodes, self.features)


class _Projection(nn.Module):
  """Residual projection: temporal stride, then a 1×1 channel map (or NodeChannelMap), BN."""
  features: int
  num_nodes: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  time_axis: int = 1

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    # A strided 1×1 convolution reads every s-th frame.
    x = jax.lax.slice_in_dim(x, 0, None, self.stride, axis=self.time_axis)
    if x.shape[-2] != self.num_nodes:
      y = NodeChannelMap(self.num_nodes, self.features, self.dtype, name='map')(x)
    else:
      y = Linear(self.features, self.dtype, name='map')(x)
    return _batch_norm(train, self.dtype, name='bn')(y)


def materialize_outputs(impl: str) -> bool:
  """Whether layers compute their output once into memory (`_relu_output`).

  On CPU, except with XLA's own convolution: that path is the one FLOP counts are taken
  from, and the conditional would add its comparisons to them.
  """
  return jax.default_backend() == 'cpu' and resolve_temporal_conv(impl) != 'xla'


def _relu_output(y: Array, materialize: bool = True) -> Array:
  """ReLU(y) for a layer's output; with `materialize`, computed once into memory.

  A layer's output feeds the next layer's mixer and its residual path. XLA's CPU
  backend fuses the elementwise BN + residual + ReLU chain into both consumers, and
  with identity residuals the chain reaches back through every earlier layer of the
  stage: each layer recomputed all of them (BENCHMARKS.md, attempt 9). A conditional
  is a fusion boundary that XLA cannot remove when its predicate is known only at run
  time; both branches compute the same ReLU.
  """
  if not materialize:
    return nn.relu(y)
  first = jax.lax.index_in_dim(y.reshape(-1), 0, keepdims=False)
  return jax.lax.cond(first > 0, nn.relu, lambda a: jnp.where(a > 0, a, 0).astype(a.dtype), y)


class STLayer(nn.Module):
  """A spatio-temporal layer (Fig. 2) with any of the four mixers.

  spatial:  Σ_p U_p H W_p → BN → + Residual/V → ReLU
  temporal: k×1 conv over T (stride s) → BN → + Residual/T → ReLU

  Residual/V is the identity when C and V are unchanged, a 1×1 channel map + BN when
  only C changes, and a (V_in, C_in)→(V_out, C_out) map + BN when V changes (bilinear
  only). Residual/T likewise, with the temporal stride; `residual=False` drops it
  (layer 1).
  """
  features: int
  mixer: str
  stride: int = 1
  adjacency: Any = None
  num_nodes_out: int | None = None
  symmetric_rank: int | None = None
  residual: bool = True
  temporal_kernel: int = 9
  dtype: Dtype = jnp.float32
  temporal_conv: str = 'auto'
  time_axis: int = 1
  materialize_output: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    v_in, c_in = x.shape[-2], x.shape[-1]
    v_out = v_in if self.num_nodes_out is None else self.num_nodes_out
    y = mixers.make_mixer(self.mixer, self.features, adjacency=self.adjacency,
                          num_nodes_out=self.num_nodes_out, rank=self.symmetric_rank,
                          dtype=self.dtype)(x)
    y = _batch_norm(train, self.dtype, _SPATIAL_BN_SCALE, name='bn_spatial')(y)
    if c_in == self.features and v_in == v_out:
      y = y + x
    else:
      y = y + _Projection(self.features, v_out, 1, self.dtype, self.time_axis,
                          name='residual_v')(x, train)
    y = nn.relu(y)

    y = TemporalConv(self.features, self.temporal_kernel, self.stride, self.dtype,
                     self.temporal_conv, self.time_axis, name='temporal')(y)
    y = _batch_norm(train, self.dtype, name='bn_temporal')(y)
    if self.residual:
      if c_in == self.features and v_in == v_out and self.stride == 1:
        y = y + x
      else:
        y = y + _Projection(self.features, v_out, self.stride, self.dtype, self.time_axis,
                            name='residual_t')(x, train)
    return _relu_output(y, self.materialize_output)


class AggregatedLayer(nn.Module):
  """A layer after aggregation (Fig. 3), V_in = V_out = 1.

  With one node, U_p is a scalar that folds into W_p, so the spatial step is a plain
  channel map: linear → BN → ReLU (no Residual/V), then the temporal block of Fig. 2.
  """
  features: int
  stride: int = 1
  temporal_kernel: int = 9
  dtype: Dtype = jnp.float32
  temporal_conv: str = 'auto'
  time_axis: int = 1
  materialize_output: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    c_in = x.shape[-1]
    y = Linear(self.features, self.dtype, name='linear')(x)
    y = nn.relu(_batch_norm(train, self.dtype, name='bn_spatial')(y))
    y = TemporalConv(self.features, self.temporal_kernel, self.stride, self.dtype,
                     self.temporal_conv, self.time_axis, name='temporal')(y)
    y = _batch_norm(train, self.dtype, name='bn_temporal')(y)
    if c_in == self.features and self.stride == 1:
      y = y + x
    else:
      y = y + _Projection(self.features, 1, self.stride, self.dtype, self.time_axis,
                          name='residual_t')(x, train)
    return _relu_output(y, self.materialize_output)


class SpatioTemporalNet(nn.Module):
  """ST-GCN-style network with a chosen spatial mixer, optionally aggregating at λ.

  input (N, T, M, V, C) → data BN (per person, joint and coordinate, over N and T) →
  persons folded into the batch → layers → mean over T and V → mean over persons →
  dense → logits (N, num_classes), float32.
  """
  num_classes: int
  mixer: str = 'bilinear'
  channels: Sequence[int] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
  strides: Sequence[int] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
  aggregate_at: int | None = None
  symmetric_rank: int | None = None
  temporal_kernel: int = 9
  adjacency_normalization: str = 'symmetric'
  dtype: Dtype = jnp.float32
  temporal_conv: str = 'auto'

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    n, t, m, v, c = x.shape
    x = nn.BatchNorm(use_running_average=not train, axis=(2, 3, 4), momentum=_BN_MOMENTUM,
                     epsilon=_BN_EPS, dtype=self.dtype, param_dtype=jnp.float32,
                     name='data_bn')(x)
    # Persons fold into the batch, (N·M, T, V, C), or frames-major (T, N·M, V, C) when
    # the temporal convolution works that way (`frames_major`).
    time_axis = 0 if frames_major(self.temporal_conv) else 1
    materialize = materialize_outputs(self.temporal_conv)
    if time_axis == 0:
      x = jnp.transpose(x, (1, 0, 2, 3, 4)).reshape(t, n * m, v, c)
    else:
      x = jnp.transpose(x, (0, 2, 1, 3, 4)).reshape(n * m, t, v, c)

    adjacency = None
    if self.mixer != 'bilinear':
      adjacency = graph.ntu_adjacency(self.adjacency_normalization)
      if adjacency.shape[-1] != v:
        raise ConfigError(f"mixer {self.mixer!r} uses the {adjacency.shape[-1]}-joint NTU "
                          f"graph, but the input has {v} joints")
    lam = self.aggregate_at
    for i, (features, stride) in enumerate(zip(self.channels, self.strides), start=1):
      name = f'layer_{i}'
      if lam is not None and i > lam:
        x = AggregatedLayer(features, stride, self.temporal_kernel, self.dtype,
                            self.temporal_conv, time_axis, materialize, name=name)(x, train)
      else:
        x = STLayer(features, self.mixer, stride, adjacency=adjacency,
                    num_nodes_out=1 if i == lam else None,
                    symmetric_rank=self.symmetric_rank, residual=i > 1,
                    temporal_kernel=self.temporal_kernel, dtype=self.dtype,
                    temporal_conv=self.temporal_conv, time_axis=time_axis,
                    materialize_output=materialize,
                    name=name)(x, train)

    # Global average pool over T and V.
    x = jnp.mean(x.astype(jnp.float32), axis=(time_axis, 2))
    x = jnp.mean(x.reshape(n, m, -1), axis=1)  # average over persons
    return nn.Dense(self.num_classes,
                    kernel_init=nn.initializers.normal(float(np.sqrt(2.0 / self.num_classes))),
                    param_dtype=jnp.float32, name='head')(x)


# ---- Building from a config ------------------------------------------------------

def validate_model_config(cfg) -> None:
  """Checks a `config.model` once, with messages that say what to change."""
  if cfg.mixer not in mixers.MIXERS:
    raise ConfigError(f'model.mixer={cfg.mixer!r} is not a mixer; choose one of {mixers.MIXERS}')
  if len(cfg.channels) != len(cfg.strides):
    raise ConfigError(f'model.channels has {len(cfg.channels)} entries but model.strides has '
                      f'{len(cfg.strides)}; give one stride per layer')
  total = len(cfg.channels)
  if not 1 <= cfg.num_layers <= total:
    raise ConfigError(f'model.num_layers={cfg.num_layers} must be in 1..{total} '
                      f'(the length of model.channels)')
  lam = cfg.aggregate_at
  if lam is not None:
    if cfg.mixer != 'bilinear':
      raise ConfigError(f"model.aggregate_at (λ)={lam} needs model.mixer='bilinear': only the "
                        f"bilinear mixer (Eq. 4) can change the number of nodes, not "
                        f"{cfg.mixer!r}. Leave aggregate_at unset for the other mixers.")
    if not 1 <= lam <= total + 1:
      raise ConfigError(f'model.aggregate_at (λ)={lam} must be in 1..{total} '
                        f'(or {total + 1} or unset for no aggregation)')
  rank = cfg.get('symmetric_rank')
  if rank is not None and not 1 <= rank <= cfg.num_joints:
    raise ConfigError(f'model.symmetric_rank={rank} must be in 1..{cfg.num_joints}')
  if cfg.get('dtype', 'float32') not in ('float32', 'bfloat16'):
    raise ConfigError(f"model.dtype={cfg.dtype!r} must be 'float32' or 'bfloat16'")
  if cfg.get('temporal_conv', 'auto') not in TEMPORAL_CONV_IMPLS:
    raise ConfigError(f'model.temporal_conv={cfg.temporal_conv!r} must be one of '
                      f'{TEMPORAL_CONV_IMPLS}')


def create_model(cfg) -> SpatioTemporalNet:
  """The network described by a `config.model` (see configs/default.py)."""
  validate_model_config(cfg)
  k = cfg.num_layers
  lam = cfg.aggregate_at
  if lam is not None and lam > k:
    lam = None  # the first k layers of the λ network (Table II) do not reach λ
  return SpatioTemporalNet(
      num_classes=cfg.num_classes,
      mixer=cfg.mixer,
      channels=tuple(cfg.channels[:k]),
      strides=tuple(cfg.strides[:k]),
      aggregate_at=lam,
      symmetric_rank=cfg.get('symmetric_rank'),
      temporal_kernel=cfg.get('temporal_kernel', 9),
      adjacency_normalization=cfg.get('adjacency_normalization', 'symmetric'),
      dtype=jnp.dtype(cfg.get('dtype', 'float32')),
      temporal_conv=cfg.get('temporal_conv', 'auto'),
  )


def input_shape(cfg, batch_size: int, num_frames: int) -> tuple[int, ...]:
  """Shape of a model input batch: (N, T, M, V, C)."""
  return (batch_size, num_frames, cfg.num_persons, cfg.num_joints, cfg.in_channels)


def init_variables(model: nn.Module, cfg, rng: Array, num_frames: int = 16) -> dict:
  """Initial {'params', 'batch_stats'} (shapes do not depend on T or the batch size)."""
  x = jnp.zeros(input_shape(cfg, 2, num_frames), jnp.float32)
  return jax.jit(lambda r: model.init(r, x, train=False))(rng)
