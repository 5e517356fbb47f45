"""The k×1 temporal convolution over frames, 'same' padding, stride s (frames-major).

Two implementations compute the same values and gradients (up to float rounding):
  'xla'   `lax.conv_general_dilated` with XLA's own gradient (GPU and TPU);
  'dft'   a product per frequency between the DFT over frames and its inverse, both as
          matrix products, over overlapping blocks of frames where that saves
          multiply-adds: the fastest on CPU (BENCHMARKS.md, attempts 8-13).
'auto' is 'dft' on CPU and 'xla' elsewhere. The network chooses one for all its layers
(`use_temporal_conv`); FLOPs are counted with 'xla', the direct convolution.
"""

import contextlib
import contextvars

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

TEMPORAL_CONV_IMPLS = ('auto', 'dft', 'xla')

_IMPL = contextvars.ContextVar('temporal_conv', default='auto')


def resolve_temporal_conv(impl: str) -> str:
  """The implementation `impl` stands for on this backend ('auto': 'dft' on CPU, else 'xla')."""
  if impl not in TEMPORAL_CONV_IMPLS:
    raise ValueError(f'unknown temporal convolution {impl!r}; choose one of {TEMPORAL_CONV_IMPLS}')
  if impl != 'auto':
    return impl
  return 'dft' if jax.default_backend() == 'cpu' else 'xla'


@contextlib.contextmanager
def use_temporal_conv(impl: str):
  """Within the block (while a network is traced), `temporal_conv` uses `impl`."""
  token = _IMPL.set(resolve_temporal_conv(impl))
  try:
    yield
  finally:
    _IMPL.reset(token)


def current_temporal_conv() -> str:
  """The implementation in use: the innermost `use_temporal_conv`, else 'auto' resolved."""
  return resolve_temporal_conv(_IMPL.get())


def temporal_conv(x: Array, kernel: Array, stride: int = 1, impl: str | None = None) -> Array:
  """(T, N, V, C) → (ceil(T/s), N, V, D) with `kernel` (k, 1, C, D), 'same' padding.

  `impl` None means `current_temporal_conv()`.
  """
  impl = current_temporal_conv() if impl is None else resolve_temporal_conv(impl)
  if impl == 'dft':
    return _temporal_conv_dft(x, kernel, stride)
  return _temporal_conv_xla(x, kernel, stride)


def _temporal_conv_xla(x: Array, kernel: Array, stride: int) -> Array:
  k = kernel.shape[0]
  pad = (k - 1) // 2
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(stride, 1), padding=((pad, k - 1 - pad), (0, 0)),
      dimension_numbers=('HNWC', 'HWIO', 'HNWC'))


def _phase_taps(k: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  """(a, b) per tap i of a k-tap kernel with i - left = s·a + b, 0 ≤ b < s, left = (k-1)//2.

  Tap i of a stride-s convolution, y[t] = Σ_i w[i] x[s·t + i - left], reads phase b of
  the frame group t + a (`_phase_groups`).
  """
  return np.divmod(np.arange(k) - (k - 1) // 2, stride)


def _phase_groups(x: Array, stride: int) -> Array:
  """Groups of s frames on the channel axis: x'[τ] = (x[s·τ], ..., x[s·τ + s - 1]).

  `x` is frames-major, (T, N, V, C); returns (ceil(T/s), N, V, s·C), the last group
  zero-padded, the channels phase-major.
  """
  t = x.shape[0]
  t_out = -(-t // stride)
  x = jnp.pad(x, [(0, t_out * stride - t)] + [(0, 0)] * (x.ndim - 1))
  x = jnp.moveaxis(x.reshape(t_out, stride, *x.shape[1:]), 1, -2)  # the phase by the channels
  return x.reshape(*x.shape[:-2], -1)


def dft_macs(frames: int, taps: int, c: int, d: int, block: int | None) -> int:
  """Multiply-adds per node of 'dft' over `frames` frames, in blocks or in one piece.

  With R = `dft_rows(L)` real products (three per frequency, one at the real ones) the
  transforms cost R·L·C and B·R·D per piece of B output frames read from L input frames,
  the products R·C·D. One piece has B = T and L = T + k/2; overlapping blocks have
  L = B + k - 1 and ceil(T/B) pieces.
  """
  if block is None:
    pieces, out, length = 1, frames, frames + taps // 2
  else:
    pieces, out, length = -(-frames // block), block, block + taps - 1
  return pieces * dft_rows(length) * (length * c + c * d + out * d)


def dft_rows(length: int) -> int:
  """Real products per channel pair in 'dft' over L frames.

  Three per frequency, F = L/2 + 1 of them, and one at the frequencies where the DFT of
  a real signal is real: 0 and, for even L, L/2.
  """
  real = 2 if length % 2 == 0 else 1
  return 3 * (length // 2 + 1) - 2 * real


def _live_rows(length: int) -> np.ndarray:
  """The `dft_rows(L)` rows 'dft' keeps of its 3F rows (frequency, k1/k2/k3): 0, 3 .. R + 1.

  k2 and k3 are dead at f = 0 and, for even L, at the last frequency (`_temporal_conv_dft`).
  """
  return np.r_[0, 3:dft_rows(length) + 2]


def dft_block(frames: int, taps: int, c: int, d: int) -> int | None:
  """Output frames per block for 'dft', or None for one transform over the whole clip.

  Overlap-save: short blocks make the transforms ≈ L²/B instead of ≈ T per frame and
  channel, at the price of more frequencies per output frame in the products (≈ (B + k)/2B
  instead of ≈ 1/2) and a copy of the overlapping windows. Blocks are taken when they save
  at least a fifth of the multiply-adds: the 64- and 128-channel layers of a 300-frame clip,
  the 64-channel ones of a 64-frame clip.
  """
  best = min(range(taps, max(frames // 2, taps) + 1),
             key=lambda b: dft_macs(frames, taps, c, d, b))
  if 5 * dft_macs(frames, taps, c, d, best) < 4 * dft_macs(frames, taps, c, d, None):
    return best
  return None


def frame_range(x: Array, first: int, count: int) -> Array:
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
    segment = frame_range(x, start - offset, blocks * block)
    segment = segment.reshape(blocks, block, *x.shape[1:])
    parts.append(jnp.swapaxes(segment[:, :min(block, length - start)], 0, 1))
  return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def kernel_rows(kernel_size: int, stride: int, shift: int, length: int) -> np.ndarray:
  """G, (R·s, k), with G·w the kernel's rows of the product per frequency in 'dft'.

  w is the kernel as (k, C·D). Tap i (group offset a_i, phase b_i, `_phase_taps`) sits at
  circular offset a_i - shift in L frames, so the spectrum of phase b's (C, D) block is
  H_b[f] = Σ_{i: b_i = b} w[i] exp(2πi·f·(a_i - shift)/L), and 'dft' multiplies by the
  rows H_re, H_im - H_re and H_re + H_im of each frequency, less the two dead ones at each
  real frequency (`dft_rows`). Row ρ·s + b of G gives row ρ for phase b, so that G·w
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
  """The convolution as a product per frequency, the transforms as matrix products.

  y = x ⊛ w is computed from the DFT of x over frames, a (C × D) product per frequency
  and the inverse DFT (exact up to float rounding). The
  DFT over frames is an (R × T) matrix (three real rows per frequency, one at the real
  frequencies, see below) and its inverse a (T × R) one, so the whole convolution is
  three matrix products with no FFT: X = D·x, the products per frequency (one batched
  product), y = E·Y. Where it saves multiply-adds (`dft_block`) the clip is cut into
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
    x = _phase_groups(x, stride)
  t, n, v, c = x.shape
  # One transform over the clip, long enough that the circular convolution never wraps.
  length = max(t + max(-a_min, a_max), k)
  shift = 0  # tap group a sits at circular offset a - shift (`kernel_rows`)
  block = dft_block(t, k, c, d)
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
  # straight from the kernel as one product (`kernel_rows`).
  g = jnp.asarray(kernel_rows(kernel_size, stride, shift, length), jnp.float32)  # (R·s, k)
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
