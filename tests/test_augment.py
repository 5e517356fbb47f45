"""Augmentation and temporal sampling (stbln_jax.data.augment): pure NumPy, seeded."""

import numpy as np
import pytest

from stbln_jax.data import augment
from stbln_jax.data import layouts


def skeleton(frames=40, joints=25, channels=3, seed=0):
  return np.random.default_rng(seed).normal(
      size=(frames, 2, joints, channels)).astype(np.float32)


def bone_lengths(x, layout, coordinates):
  children, parents = np.asarray(layouts.get_layout(layout).bones).T
  bones = x[..., children, :coordinates] - x[..., parents, :coordinates]
  return np.linalg.norm(bones, axis=-1)


RANDOM_OPERATIONS = {
    'rotate_xyz': lambda x, rng: augment.random_rotate(x, rng, 0.3, 'xyz'),
    'rotate_xys': lambda x, rng: augment.random_rotate(x, rng, 0.3, 'xys'),
    'scale': lambda x, rng: augment.random_scale(x, rng, 0.1, 'xyz'),
    'crop_resize': lambda x, rng: augment.crop_resize(x, 16, (0.5, 1.0), rng,
                                                      min_length=4),
    'uniform_short': lambda x, rng: augment.uniform_indices(len(x), 50, rng),
    'uniform_medium': lambda x, rng: augment.uniform_indices(len(x), 30, rng),
    'uniform_long': lambda x, rng: augment.uniform_indices(len(x), 16, rng),
    'rotate_xy_degrees': lambda x, rng: augment.random_rotate(
        x, rng, np.radians(60), 'xyz', axes='xy', whole_degrees=True),
    'isotropic_scale': lambda x, rng: augment.random_isotropic_scale(x, rng, 0.5),
    'random_sorted': lambda x, rng: augment.random_sorted_indices(len(x), 52, rng),
}


@pytest.mark.parametrize('name', sorted(RANDOM_OPERATIONS))
def test_same_seed_same_output_other_seed_other_output(name):
  operation, x = RANDOM_OPERATIONS[name], skeleton()
  first = operation(x, augment.sample_rng(0, 3, 7))
  np.testing.assert_array_equal(operation(x, augment.sample_rng(0, 3, 7)), first)
  others = [operation(x, augment.sample_rng(*key)) for key in
            ((1, 3, 7), (0, 4, 7), (0, 3, 8))]
  assert all(not np.array_equal(o, first) for o in others)


def test_test_clips_are_fixed_and_differ_from_each_other():
  clips = augment.eval_clip_indices(300, 100, 10)
  assert clips.shape == (10, 100)
  np.testing.assert_array_equal(augment.eval_clip_indices(300, 100, 10), clips)
  assert len({tuple(c) for c in clips}) == 10
  # One frame from each of the 100 segments of 3 frames, in every clip.
  np.testing.assert_array_equal(clips // 3, np.broadcast_to(np.arange(100), (10, 100)))


@pytest.mark.parametrize('channels,layout', [('xyz', 'ntu25'), ('xys', 'coco17'),
                                             ('xy', 'coco17')])
def test_rotation_keeps_bone_lengths_and_scores(channels, layout):
  x = skeleton(joints=layouts.get_layout(layout).num_joints, channels=len(channels))
  coordinates = 3 if channels == 'xyz' else 2
  rotated = augment.random_rotate(x, np.random.default_rng(1), 0.3, channels)
  assert rotated.dtype == np.float32 and not np.allclose(rotated, x)
  np.testing.assert_allclose(bone_lengths(rotated, layout, coordinates),
                             bone_lengths(x, layout, coordinates), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(rotated[..., coordinates:], x[..., coordinates:])


def test_rotation_angles_stay_within_theta():
  for seed in range(20):
    x = np.zeros((1, 1, 1, 3), np.float32)
    x[..., 0] = 1.0  # the x axis
    y = augment.random_rotate(x, np.random.default_rng(seed), 0.3, 'xyz')
    angle = np.arccos(np.clip(y[0, 0, 0] @ x[0, 0, 0], -1, 1))
    assert 0 < angle <= 3 * 0.3 + 1e-6  # at most the three angles' sum
    xy = np.array([[[[1.0, 0.0, 0.7]]]], np.float32)
    y = augment.random_rotate(xy, np.random.default_rng(seed), 0.3, 'xys')
    assert abs(np.arctan2(y[0, 0, 0, 1], y[0, 0, 0, 0])) <= 0.3


def test_rotation_matrix_is_rz_ry_rx():
  rx = augment.rotation_matrix([0.2, 0.0, 0.0])
  np.testing.assert_allclose(rx @ [0, 1, 0], [0, np.cos(0.2), -np.sin(0.2)])
  r = augment.rotation_matrix([0.1, -0.2, 0.3])
  composed = (augment.rotation_matrix([0, 0, 0.3]) @ augment.rotation_matrix([0, -0.2, 0])
              @ augment.rotation_matrix([0.1, 0, 0]))
  np.testing.assert_allclose(r, composed, atol=1e-12)
  np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


def test_scale_is_one_factor_per_axis_and_leaves_scores():
  x = skeleton(channels=3)
  scaled = augment.random_scale(x, np.random.default_rng(2), 0.1, 'xys')
  factors = scaled[..., :2] / x[..., :2]
  per_axis = factors.reshape(-1, 2)
  np.testing.assert_allclose(per_axis, np.broadcast_to(per_axis[0], per_axis.shape),
                             rtol=1e-5)
  assert np.all(np.abs(per_axis[0] - 1) <= 0.1) and per_axis[0, 0] != per_axis[0, 1]
  np.testing.assert_array_equal(scaled[..., 2], x[..., 2])
  assert augment.random_scale(x, np.random.default_rng(2), 0.1, 'xyz').shape == x.shape


@pytest.mark.parametrize('frames,num_frames', [(40, 16), (40, 64), (100, 64)])
def test_crop_resize_keeps_the_first_and_last_kept_frame(frames, num_frames):
  x = skeleton(frames)
  for seed in range(5):
    start, stop = augment.crop_window(frames, (0.5, 1.0), np.random.default_rng(seed),
                                      min_length=8)
    assert 0 <= start < stop <= frames and stop - start >= min(8, frames)
    out = augment.crop_resize(x, num_frames, (0.5, 1.0), np.random.default_rng(seed),
                              min_length=8)
    assert out.shape == (num_frames, 2, 25, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], x[start])
    np.testing.assert_allclose(out[-1], x[stop - 1], rtol=1e-6, atol=1e-6)


def test_crop_resize_interpolates_linearly_and_centre_crops_at_test():
  ramp = np.arange(11, dtype=np.float32).reshape(11, 1, 1, 1) * np.ones((1, 2, 3, 3))
  # The centre 0.95 of 11 frames drops int(0.05 * 11 / 2) = 0 frames each side.
  out = augment.crop_resize(ramp, 21, (0.95,))
  np.testing.assert_allclose(out[:, 0, 0, 0], np.arange(21) / 2, atol=1e-6)
  # The centre half: int(0.5 * 11 / 2) = 2 frames off each side, [2, 9).
  start, stop = augment.crop_window(11, (0.5,))
  assert (start, stop) == (2, 9)
  out = augment.crop_resize(ramp, 7, (0.5,))
  np.testing.assert_allclose(out[:, 0, 0, 0], np.arange(2, 9), atol=1e-6)
  # A random crop is at least `min_length` long (or the whole sample).
  assert augment.crop_window(11, (0.1, 0.1), np.random.default_rng(0), 64) == (0, 11)


def test_uniform_sampling_covers_the_sample_in_order():
  rng = np.random.default_rng(3)
  # Fewer frames than the clip: consecutive frames, looping.
  short = augment.uniform_indices(7, 20, rng)
  np.testing.assert_array_equal(np.diff(short) % 7, np.ones(19))
  # Between one and two clip lengths: increasing, every index at most once.
  medium = augment.uniform_indices(45, 30, rng)
  assert np.all(np.diff(medium) >= 1) and medium[0] >= 0 and medium[-1] < 45
  assert np.all(np.diff(medium) <= 2)
  # Long: exactly one frame in each equal segment.
  long = augment.uniform_indices(300, 100, rng)
  np.testing.assert_array_equal(long // 3, np.arange(100))
  # A short sample's test clip i starts at i · length // num_clips.
  clips = augment.eval_clip_indices(5, 8, 3)
  np.testing.assert_array_equal(clips[:, 0], [0, 1, 3])
  np.testing.assert_array_equal(clips[2], (3 + np.arange(8)) % 5)


def _ctr_gcn_ucla_view(x, degrees_x, degrees_y, s=1.0):
  """CTR-GCN's NW-UCLA view transform as its feeder writes it: row vectors times
  Ry·Rx·S, its own signs."""
  ax, ay = np.radians(degrees_x), np.radians(degrees_y)
  rx = np.array([[1, 0, 0], [0, np.cos(ax), np.sin(ax)], [0, -np.sin(ax), np.cos(ax)]])
  ry = np.array([[np.cos(ay), 0, -np.sin(ay)], [0, 1, 0], [np.sin(ay), 0, np.cos(ay)]])
  return x.reshape(-1, 3) @ (ry @ rx @ (s * np.eye(3)))


def test_xy_rotation_in_whole_degrees_is_ctr_gcns_ucla_view_transform():
  x = skeleton(frames=6, joints=20).astype(np.float64)
  for seed in range(10):
    rotated = augment.random_rotate(x, np.random.default_rng(seed), np.radians(60), 'xyz',
                                    axes='xy', whole_degrees=True)
    degrees = np.random.default_rng(seed).integers(-60, 61, size=2)
    np.testing.assert_allclose(rotated.reshape(-1, 3), _ctr_gcn_ucla_view(x, *degrees),
                               rtol=1e-5, atol=1e-5)


def test_isotropic_scale_is_one_factor_for_every_axis_and_leaves_scores():
  x = skeleton(channels=3)
  for seed in range(5):
    scaled = augment.random_isotropic_scale(x, np.random.default_rng(seed), 0.5, 'xys')
    factors = scaled[..., :2] / x[..., :2]
    np.testing.assert_allclose(factors, factors.flat[0], rtol=1e-5)
    assert 0.5 <= factors.flat[0] <= 1.5
    np.testing.assert_array_equal(scaled[..., 2], x[..., 2])


@pytest.mark.parametrize('length', [1, 6, 52, 201])
def test_random_sorted_and_spread_indices(length):
  rng = np.random.default_rng(4)
  indices = augment.random_sorted_indices(length, 52, rng)
  assert indices.shape == (52,) and indices.min() >= 0 and indices.max() < length
  assert np.all(np.diff(indices) >= 0)
  if length < 52:
    assert len(set(indices)) <= length  # repeats
  spread = augment.spread_indices(length, 52)
  np.testing.assert_array_equal(spread, np.floor(np.linspace(0, length - 1, 52)))
  assert spread[0] == 0 and spread[-1] == length - 1
