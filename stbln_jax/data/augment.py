"""Training-time augmentation and temporal sampling: pure NumPy on one sample.

A sample is (T, M, V, C) with C holding one of `preprocess.CHANNELS`. Every
random function takes a seeded `np.random.Generator`, so the input pipeline
makes each output a function of (seed, epoch, sample index) (`sample_rng`).

Spatial (the same transform in every frame, for every person):
  random_rotate  3D: angles uniform in [-θ, θ] about x, y and z, R = Rz·Ry·Rx,
                 as CTR-GCN's `random_rot` (feeders/tools.py) and PYSKL's
                 `RandomRot`; or about x and y only, as CTR-GCN's NW-UCLA
                 feeder (`feeder_ucla.py`), optionally in whole degrees as it
                 draws them; 2D: one in-plane angle for (x, y). A score channel
                 is left as it is.
  random_scale   a factor 1 + U(-s, s) per coordinate axis, as PYSKL's
                 `RandomScale` (which also scales a score channel; we do not).
  random_isotropic_scale
                 one factor 1 + U(-s, s) for every axis (CTR-GCN's NW-UCLA
                 feeder: U(0.5, 1.5)).

Temporal (records hold their own length T; out: `num_frames` frames):
  crop_resize    CTR-GCN's `valid_crop_resize`: keep a random fraction
                 p ~ U(p_interval) of the frames (at least `min_length`), or,
                 with one value p, the centre p (test); then resample linearly
                 to `num_frames`. The first and last output frames are the
                 first and last kept ones (CTR-GCN's torch `interpolate` with
                 align_corners=False shifts them by half a step).
  uniform_indices, eval_clip_indices
                 PYSKL's `UniformSampleFrames`: `clip_len` equal segments, one
                 random frame from each; at test `num_clips` clips drawn from a
                 generator seeded with `TEST_SEED` (PYSKL's 255).
  random_sorted_indices, spread_indices
                 CTR-GCN's NW-UCLA sampling: random frames (repeats allowed) in
                 time order; at test floor(linspace(0, T - 1, num_frames)).
`eval_frames` is the evaluation's sampling by name ('pad', 'crop_resize',
'uniform', 'random_sorted'), which the input pipeline and `serving` share.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from stbln_jax.data import preprocess

# CTR-GCN keeps at least this many frames when cropping at random (the default
# of `config.crop_min_frames`).
CROP_MIN_FRAMES = 64
# PYSKL's `UniformSampleFrames(seed=255)` at test.
TEST_SEED = 255
# What 3D rotations turn about: all three axes, or x and y (CTR-GCN's NW-UCLA).
ROTATION_AXES = ('xyz', 'xy')
_AUGMENT_STREAM = 1  # keeps these generators apart from the shuffle's ([seed, epoch])


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  """The generator of one training sample's augmentation and sampling."""
  return np.random.default_rng([seed, epoch, index, _AUGMENT_STREAM])


# ---- Spatial -----------------------------------------------------------------


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
  """R = Rz·Ry·Rx (3, 3) for angles (ax, ay, az), with CTR-GCN's signs."""
  (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
  rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
  ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
  rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
  return rz @ ry @ rx


def rotation_matrix_2d(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s], [s, c]])


def _random_angles(rng: np.random.Generator, theta: float, size: int | None,
                   whole_degrees: bool) -> np.ndarray | float:
  if whole_degrees:
    bound = round(math.degrees(theta))
    return np.radians(rng.integers(-bound, bound + 1, size=size))
  return rng.uniform(-theta, theta, size=size)


def random_rotate(x: np.ndarray, rng: np.random.Generator, theta: float,
                  channels: str = 'xyz', axes: str = 'xyz',
                  whole_degrees: bool = False) -> np.ndarray:
  """x (..., C) rotated by random angles in [-theta, theta] (radians).

  3D `axes` 'xyz': about x, y and z (R = Rz·Ry·Rx); 'xy': about x and y only,
  x @ Ry·Rx as CTR-GCN's NW-UCLA feeder turns its row vectors. 2D: in-plane.
  `whole_degrees`: angles drawn as whole degrees (that feeder's randint).
  """
  if channels != 'xyz':
    rotation = rotation_matrix_2d(_random_angles(rng, theta, None, whole_degrees))
  elif axes == 'xy':
    ax, ay = _random_angles(rng, theta, 2, whole_degrees)
    rotation = (rotation_matrix((0, ay, 0)) @ rotation_matrix((ax, 0, 0))).T
  else:
    rotation = rotation_matrix(_random_angles(rng, theta, 3, whole_degrees))
  n = preprocess.coordinates(channels)
  out = np.array(x, np.float32)
  out[..., :n] = x[..., :n] @ rotation.T.astype(np.float32)
  return out


def random_scale(x: np.ndarray, rng: np.random.Generator, scale: float,
                 channels: str = 'xyz') -> np.ndarray:
  """x (..., C) with each coordinate axis times its own 1 + U(-scale, scale)."""
  n = preprocess.coordinates(channels)
  factors = 1 + rng.uniform(-scale, scale, size=n)
  out = np.array(x, np.float32)
  out[..., :n] = x[..., :n] * factors.astype(np.float32)
  return out


def random_isotropic_scale(x: np.ndarray, rng: np.random.Generator,
                           scale: float, channels: str = 'xyz') -> np.ndarray:
  """x (..., C) with every coordinate times one 1 + U(-scale, scale)."""
  n = preprocess.coordinates(channels)
  out = np.array(x, np.float32)
  out[..., :n] = x[..., :n] * np.float32(1 + rng.uniform(-scale, scale))
  return out


# ---- Temporal ----------------------------------------------------------------


def crop_window(length: int, p_interval: Sequence[float],
                rng: np.random.Generator | None = None,
                min_length: int = CROP_MIN_FRAMES) -> tuple[int, int]:
  """[start, stop) of the frames `crop_resize` keeps of `length`."""
  if len(p_interval) == 1:
    bias = int((1 - p_interval[0]) * length / 2)
    return bias, length - bias
  p = rng.uniform(p_interval[0], p_interval[1])
  kept = min(max(int(np.floor(length * p)), min_length), length)
  start = int(rng.integers(0, length - kept + 1))
  return start, start + kept


def resize(x: np.ndarray, num_frames: int) -> np.ndarray:
  """x (T, ...) resampled linearly to `num_frames`, keeping both end frames."""
  x = np.asarray(x, np.float32)
  if len(x) == 1 or num_frames == 1:
    return np.repeat(x[:1], num_frames, axis=0)
  position = np.linspace(0, len(x) - 1, num_frames)
  lower = np.minimum(np.floor(position).astype(int), len(x) - 2)
  weight = (position - lower).astype(np.float32).reshape(
      (-1,) + (1,) * (x.ndim - 1))
  return (1 - weight) * x[lower] + weight * x[lower + 1]


def crop_resize(x: np.ndarray, num_frames: int, p_interval: Sequence[float],
                rng: np.random.Generator | None = None,
                min_length: int = CROP_MIN_FRAMES) -> np.ndarray:
  """CTR-GCN's valid crop and resize of x (T, M, V, C) to `num_frames`.

  Args:
    p_interval: (low, high) for a random crop (training) or (p,) for the
      centre crop of fraction p (test).
    rng: the generator of a random crop (unused for a centre crop).
  """
  if len(x) == 0:
    return np.zeros((num_frames,) + x.shape[1:], np.float32)
  start, stop = crop_window(len(x), p_interval, rng, min_length)
  return resize(x[start:stop], num_frames)


def random_sorted_indices(length: int, num_frames: int,
                          rng: np.random.Generator) -> np.ndarray:
  """`num_frames` random frame indices of `length`, repeats allowed, sorted.

  CTR-GCN's NW-UCLA training sampling (which draws without replacement from
  100 copies of every index: the same up to how often one frame can repeat).
  """
  return np.sort(rng.integers(0, length, size=num_frames))


def spread_indices(length: int, num_frames: int) -> np.ndarray:
  """floor(linspace(0, length - 1, num_frames)): evenly spread frames, the first
  and last included (CTR-GCN's NW-UCLA test sampling)."""
  return np.linspace(0, length - 1, num_frames).astype(np.int64)


def uniform_indices(length: int, clip_len: int, rng: np.random.Generator,
                    start: int | None = None) -> np.ndarray:
  """PYSKL's uniform sampling of `clip_len` frame indices from `length`.

  Fewer frames than `clip_len`: consecutive frames from `start` (default
  random), looping. Up to twice as many: every frame but `length - clip_len`
  randomly skipped ones' gaps (increasing indices). More: one random frame
  in each of `clip_len` equal segments.
  """
  if length < clip_len:
    if start is None:
      start = int(rng.integers(0, length))
    return (start + np.arange(clip_len)) % length
  if length < 2 * clip_len:
    skips = np.zeros(clip_len + 1, np.int64)
    skips[rng.choice(clip_len + 1, length - clip_len, replace=False)] = 1
    return np.arange(clip_len) + np.cumsum(skips)[:-1]
  bounds = np.arange(clip_len + 1) * length // clip_len
  return bounds[:-1] + rng.integers(0, np.diff(bounds))


def eval_clip_indices(length: int, clip_len: int, num_clips: int,
                      seed: int = TEST_SEED) -> np.ndarray:
  """int (num_clips, clip_len): PYSKL's fixed test clips of one sample.

  A short sample's clip i starts at frame i (or i · length / num_clips when
  there are at least `num_clips` frames), as PYSKL's test clips do.
  """
  rng = np.random.default_rng(seed)
  clips = []
  for i in range(num_clips):
    start = i if length < num_clips else i * length // num_clips
    clips.append(uniform_indices(length, clip_len, rng, start=start % length))
  return np.stack(clips)


def eval_frames(x: np.ndarray, num_frames: int, sampling: str = 'pad',
                test_crop: float = 0.95, num_test_clips: int = 1) -> np.ndarray:
  """The evaluation's `num_frames` frames of x (T, ...) by `sampling`: 'pad' repeats
  or cuts (`preprocess.pad_or_crop`), 'crop_resize' takes the centre `test_crop`,
  'uniform' the fixed test clips, (K, num_frames, ...) when K = `num_test_clips` > 1,
  'random_sorted' evenly spread frames (`spread_indices`)."""
  if sampling == 'crop_resize':
    return crop_resize(x, num_frames, (test_crop,))
  if sampling == 'uniform':
    clips = x[eval_clip_indices(len(x), num_frames, num_test_clips)]
    return clips if num_test_clips > 1 else clips[0]
  if sampling == 'random_sorted':
    return x[spread_indices(len(x), num_frames)]
  return preprocess.pad_or_crop(x, num_frames)
