"""Tests for body selection, 2s-AGCN pre-normalisation, padding and streams."""

import numpy as np
import pytest

from stbln_jax.data import preprocess
from stbln_jax.data import read_skeleton
from stbln_jax.data import skeleton as skeleton_lib

V = 25
SPINE_BASE, SPINE_MID, L_SHOULDER, R_SHOULDER, CENTRE = 0, 1, 4, 8, 20


def _unit(v):
  return v / np.linalg.norm(v)


def _random_rotation(rng):
  q, r = np.linalg.qr(rng.standard_normal((3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q


def _orthogonal_person(rng, num_frames):
  """(T, 25, 3) moving joints whose frame-1 shoulders are perpendicular to
  the frame-1 spine (so both alignments can hold exactly), seen from a
  random rotation and position."""
  joints = rng.normal(0, 0.3, (num_frames, V, 3))
  joints[0, SPINE_BASE] = [0.0, 0.0, 0.0]
  joints[0, SPINE_MID] = [0.0, 0.3, 0.0]
  joints[0, L_SHOULDER] = [-0.2, 0.5, 0.05]
  joints[0, R_SHOULDER] = [0.2, 0.5, 0.05]
  rotation = _random_rotation(rng)
  return joints @ rotation.T + rng.normal(0, 2, 3)


def _skeleton_from_tracks(tracks, num_frames):
  """A `Skeleton` with one body per (body_id, present, xyz (T, 25, 3))."""
  frames = []
  for t in range(num_frames):
    here = [(i, xyz[t]) for i, present, xyz in tracks if present[t]]
    b = len(here)
    frames.append(skeleton_lib.Frame(
        body_ids=np.array([i for i, _ in here], np.int64),
        body_info=np.zeros((b, 9), np.float32),
        xyz=np.array([x for _, x in here], np.float32).reshape(b, V, 3),
        depth_xy=np.zeros((b, V, 2), np.float32),
        color_xy=np.zeros((b, V, 2), np.float32),
        orientation=np.zeros((b, V, 4), np.float32),
        tracking_state=np.full((b, V), 2, np.int8)))
  return skeleton_lib.Skeleton(path='made-up', num_frames=num_frames,
                               frames=tuple(frames))


# ---- Body selection ----------------------------------------------------------

def test_select_bodies_ranks_by_motion_energy_and_groups_by_id():
  rng = np.random.default_rng(0)
  num_frames = 30
  still = np.repeat(rng.normal(0, 0.01, (1, V, 3)), num_frames, 0) + [0, 0, 3]
  moving = rng.normal(0, 0.5, (num_frames, V, 3)) + [1, 0, 3]
  middle = rng.normal(0, 0.2, (num_frames, V, 3)) + [-1, 0, 3]
  present = np.ones(num_frames, bool)
  partly = present.copy()
  partly[:10] = False
  skeleton = _skeleton_from_tracks(
      [(11, present, still), (22, partly, middle), (33, present, moving)],
      num_frames)
  out = preprocess.select_bodies(skeleton)
  assert out.shape == (num_frames, 2, V, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out[:, 0], moving, rtol=1e-6)
  np.testing.assert_allclose(out[10:, 1], middle[10:], rtol=1e-6)
  assert not out[:10, 1].any()  # zeros where body 22 is absent


def test_energy_is_2s_agcn_nonzero_std():
  rng = np.random.default_rng(1)
  track = rng.normal(0, 1, (20, V, 3))
  track[5:8] = 0
  valid = track[np.r_[0:5, 8:20]]
  expected = sum(valid[:, :, c].std() for c in range(3))
  assert preprocess._motion_energy(track) == pytest.approx(expected)
  assert preprocess._motion_energy(np.zeros((4, V, 3))) == 0.0


def test_single_body_leaves_second_person_zero(ntu_samples_dir):
  skeleton = read_skeleton(ntu_samples_dir / 'S001C001P001R001A011.skeleton')
  out = preprocess.select_bodies(skeleton)
  assert out[:, 0].any() and not out[:, 1].any()


def test_two_person_file_keeps_both(ntu_samples_dir):
  skeleton = read_skeleton(ntu_samples_dir / 'S001C003P008R002A058.skeleton')
  out = preprocess.select_bodies(skeleton)
  ids = skeleton.body_ids
  firsts = {i: skeleton.track(i)[1] for i in ids}
  assert {0, 1} == {next(k for k, i in enumerate(ids)
                         if np.allclose(firsts[i], out[:, m]))
                    for m in range(2)}


# ---- Pre-normalisation -------------------------------------------------------

@pytest.mark.parametrize('seed', range(5))
def test_pre_normalize_aligns_spine_with_z_and_shoulders_with_x(seed):
  rng = np.random.default_rng(seed)
  x = np.zeros((16, 2, V, 3))
  x[:, 0] = _orthogonal_person(rng, 16)
  x[:, 1] = rng.normal(0, 0.5, (16, V, 3)) + [1.0, 0.0, 3.0]
  out = preprocess.pre_normalize(x)
  assert out.shape == x.shape and out.dtype == np.float32
  spine = out[0, 0, SPINE_MID] - out[0, 0, SPINE_BASE]
  shoulders = out[0, 0, R_SHOULDER] - out[0, 0, L_SHOULDER]
  np.testing.assert_allclose(_unit(spine), [0, 0, 1], atol=1e-5)
  np.testing.assert_allclose(_unit(shoulders), [1, 0, 0], atol=1e-5)
  # Person 1's spine middle is the origin of every frame.
  np.testing.assert_allclose(out[:, 0, SPINE_MID], 0, atol=1e-6)
  # Distances within a frame are kept (a rigid motion).
  np.testing.assert_allclose(
      np.linalg.norm(out[:, 1, 3] - out[:, 0, 7], axis=-1),
      np.linalg.norm(x[:, 1, 3] - x[:, 0, 7], axis=-1), rtol=1e-5)


def test_pre_normalize_on_real_file_follows_2s_agcn(ntu_samples_dir):
  x = preprocess.select_bodies(
      read_skeleton(ntu_samples_dir / 'S002C001P003R001A003.skeleton'))
  out = preprocess.pre_normalize(x)
  assert out.shape == (100, 2, V, 3)
  # 2s-AGCN's second rotation puts the shoulders exactly on +x; the spine
  # then leans off +z because real shoulders are not quite perpendicular to
  # the spine: its x component is the cosine of the spine-shoulder angle.
  out64 = out.astype(np.float64)
  shoulders = _unit(out64[0, 0, R_SHOULDER] - out64[0, 0, L_SHOULDER])
  np.testing.assert_allclose(shoulders, [1, 0, 0], atol=1e-5)
  spine = _unit(out64[0, 0, SPINE_MID] - out64[0, 0, SPINE_BASE])
  x64 = x.astype(np.float64)
  cosine = np.dot(_unit(x64[0, 0, R_SHOULDER] - x64[0, 0, L_SHOULDER]),
                  _unit(x64[0, 0, SPINE_MID] - x64[0, 0, SPINE_BASE]))
  assert spine[0] == pytest.approx(cosine, abs=1e-5)
  assert spine[2] > np.cos(np.deg2rad(10))
  np.testing.assert_allclose(out[:, 0, SPINE_MID], 0, atol=1e-6)
  assert not out[:, 1].any()  # the absent second person stays all-zero


def _reference_pre_normalization(sample, max_frames=300):
  """2s-AGCN's `pre_normalization`, step by step on a 300-frame buffer, for
  one sample (T, M, V, 3); returns (300, M, V, 3)."""
  num_frames, num_persons = sample.shape[:2]
  s = np.zeros((num_persons, max_frames, V, 3))
  s[:, :num_frames] = np.transpose(sample, (1, 0, 2, 3))
  for person in s:
    if person.sum() == 0:
      continue
    if person[0].sum() == 0:
      kept = person[person.sum((1, 2)) != 0].copy()
      person[:] = 0
      person[:len(kept)] = kept
    for f in range(max_frames):
      if person[f].sum() == 0 and person[f:].sum() == 0:
        person[f:] = np.concatenate([person[:f]] * max_frames)[:max_frames - f]
        break
  centre = s[0, :, SPINE_MID:SPINE_MID + 1].copy()
  for p in range(num_persons):
    if s[p].sum() != 0:
      s[p] = (s[p] - centre) * (s[p].sum(-1, keepdims=True) != 0)
  for first, second, target in ((SPINE_BASE, SPINE_MID, [0, 0, 1]),
                                (L_SHOULDER, R_SHOULDER, [1, 0, 0])):
    v = s[0, 0, second] - s[0, 0, first]
    axis = np.cross(v, target)
    angle = np.arccos(np.clip(np.dot(_unit(v), target), -1, 1))
    k = _unit(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rotation = (np.eye(3) + np.sin(angle) * cross
                + (1 - np.cos(angle)) * cross @ cross)
    s = s @ rotation.T
  return np.transpose(s, (1, 0, 2, 3))


@pytest.mark.parametrize('name', ['S001C003P008R002A058',
                                  'S003C001P015R001A034'])
def test_pre_normalize_matches_2s_agcn_on_real_files(ntu_samples_dir, name):
  x = preprocess.select_bodies(
      read_skeleton(ntu_samples_dir / f'{name}.skeleton'))
  out = preprocess.pre_normalize(x)
  reference = _reference_pre_normalization(x)
  np.testing.assert_allclose(out, reference[:len(out)], atol=2e-6)
  # Padding by repetition continues the same sequence.
  np.testing.assert_allclose(preprocess.pad_or_crop(out, 300), reference,
                             atol=2e-6)


def test_pre_normalize_matches_2s_agcn_with_gaps_and_late_starts():
  rng = np.random.default_rng(11)
  x = np.zeros((40, 2, V, 3))
  x[5:35, 0] = _orthogonal_person(rng, 30)  # starts late, ends early
  x[20:22, 0] = 0                            # a gap inside
  x[8:30, 1] = rng.normal(0, 0.3, (22, V, 3)) + [1.0, 0.0, 3.0]
  out = preprocess.pre_normalize(x)
  reference = _reference_pre_normalization(x)
  # Both persons move to the front; person 1 has 28 frames left.
  assert len(out) == 28
  np.testing.assert_allclose(out, reference[:28], atol=1e-6)


def test_rotation_onto_turns_vector_onto_target():
  rng = np.random.default_rng(3)
  for _ in range(20):
    v, t = rng.normal(size=3), rng.normal(size=3)
    r = preprocess.rotation_onto(v, t)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(_unit(r @ v), _unit(t), atol=1e-12)
    # It turns about v x t: that axis is left where it is.
    axis = np.cross(v, t)
    np.testing.assert_allclose(r @ axis, axis, atol=1e-12)
  np.testing.assert_allclose(
      preprocess.rotation_onto([0, 0, -2.0], [0, 0, 1.0]) @ [0, 0, -2.0],
      [0, 0, 2.0], atol=1e-12)
  np.testing.assert_array_equal(preprocess.rotation_onto([0, 0, 0], [1, 0, 0]),
                                np.eye(3))


def test_pre_normalize_shifts_empty_frames_and_drops_trailing_ones():
  rng = np.random.default_rng(4)
  x = np.zeros((20, 2, V, 3))
  person = _orthogonal_person(rng, 12)
  x[3:15, 0] = person  # frames 0-2 and 15-19 empty
  out = preprocess.pre_normalize(x)
  assert out.shape == (12, 2, V, 3)
  alone = np.zeros((12, 2, V, 3))
  alone[:, 0] = person
  reference = preprocess.pre_normalize(alone)
  np.testing.assert_allclose(out, reference, atol=1e-6)


def test_pre_normalize_repeats_a_shorter_second_person():
  rng = np.random.default_rng(5)
  x = np.zeros((10, 2, V, 3))
  x[:, 0] = _orthogonal_person(rng, 10)
  x[:4, 1] = rng.normal(0, 0.3, (4, V, 3)) + 2.0
  out = preprocess.pre_normalize(x)
  # 2s-AGCN fills person 2's trailing frames by repeating its 4 frames; each
  # frame is then centred on person 1, so compare person 2's own shape.
  shape = out[:, 1] - out[:, 1, :1]
  np.testing.assert_allclose(shape[4:8], shape[0:4], atol=1e-5)
  np.testing.assert_allclose(shape[8:10], shape[0:2], atol=1e-5)
  assert np.all(np.abs(out[:, 1]).sum((-1, -2)) > 0)


def test_pre_normalize_masks_zero_joints_and_handles_empty_input():
  rng = np.random.default_rng(6)
  x = np.zeros((6, 2, V, 3))
  x[:, 0] = _orthogonal_person(rng, 6)
  x[:, 0, 23] = 0.0  # a joint that was never seen
  out = preprocess.pre_normalize(x)
  assert not out[:, 0, 23].any()
  assert not out[:, 1].any()
  empty = preprocess.pre_normalize(np.zeros((7, 2, V, 3)))
  assert empty.shape == (0, 2, V, 3)


def test_preprocess_skeleton_on_real_files(ntu_samples_dir):
  out = preprocess.preprocess_skeleton(
      ntu_samples_dir / 'S001C003P008R002A058.skeleton')
  assert out.shape == (70, 2, V, 3) and out.dtype == np.float32
  assert out[:, 1].any()
  skeleton = read_skeleton(ntu_samples_dir / 'S001C001P001R001A011.skeleton')
  np.testing.assert_array_equal(
      preprocess.preprocess_skeleton(skeleton),
      preprocess.preprocess_skeleton(skeleton.path))


def test_no_skeleton_is_a_clear_error(ntu_samples_dir):
  path = ntu_samples_dir / 'S001C002P006R001A008.skeleton'
  with pytest.raises(preprocess.NoSkeletonError, match='no body') as info:
    preprocess.preprocess_skeleton(path)
  assert isinstance(info.value, skeleton_lib.SkeletonFormatError)
  assert info.value.path == str(path)


def _full_path_preprocess(path):
  """`preprocess_skeleton` made of the whole-file reader."""
  return preprocess.pre_normalize(
      preprocess.select_bodies(read_skeleton(path)))


def test_preprocess_skeleton_is_the_full_reader_bit_for_bit(ntu_samples_dir,
                                                           tmp_path):
  from stbln_jax.data import synthetic
  paths = sorted(p for p in ntu_samples_dir.glob('*.skeleton')
                 if read_skeleton(p).body_ids)
  paths += synthetic.write_synthetic_dataset(
      tmp_path, num_classes=12, subjects=(1, 2), cameras=(2,),
      replications=(2,), frames=(90, 110), seed=5)
  assert len(paths) == 5 + 24
  for path in paths:
    out = preprocess.preprocess_skeleton(path)
    want = _full_path_preprocess(path)
    assert out.dtype == want.dtype and out.shape == want.shape, path
    assert out.tobytes() == want.tobytes(), path
    skeleton = read_skeleton(path)
    assert preprocess.preprocess_skeleton(skeleton).tobytes() == out.tobytes()


def test_select_bodies_takes_coordinates_only(ntu_samples_dir):
  for name in ('S001C001P001R001A011', 'S001C003P008R002A058'):
    path = ntu_samples_dir / f'{name}.skeleton'
    skeleton = read_skeleton(path)
    np.testing.assert_array_equal(
        preprocess.select_bodies(skeleton_lib.read_xyz(path)),
        preprocess.select_bodies(skeleton))


@pytest.mark.parametrize('case', range(29))
def test_preprocess_skeleton_rejects_the_corpus_with_file_and_line(
    ntu_samples_dir, tmp_path, case):
  import test_skeleton  # the malformed files of the reader's tests
  name, data, line, reason = test_skeleton._corpus(ntu_samples_dir)[case]
  path = tmp_path / 'broken.skeleton'
  path.write_bytes(data)
  with pytest.raises(skeleton_lib.SkeletonFormatError) as full:
    read_skeleton(path)
  with pytest.raises(skeleton_lib.SkeletonFormatError) as info:
    preprocess.preprocess_skeleton(path)
  error = info.value
  assert not isinstance(error, preprocess.NoSkeletonError), name
  assert error.path == str(path) and isinstance(error.line, int), name
  if line is not None:
    assert error.line == line, (name, str(error))
  assert reason in error.reason, (name, str(error))
  assert (error.line, error.reason) == (full.value.line, full.value.reason)
  assert str(error).startswith(f'{path}:{error.line}: ')


# ---- Length and streams ------------------------------------------------------

def test_pad_or_crop_repeats_crops_and_fills_empty():
  x = np.arange(3 * 2 * V * 3, dtype=np.float32).reshape(3, 2, V, 3)
  padded = preprocess.pad_or_crop(x, 8)
  assert padded.shape == (8, 2, V, 3)
  np.testing.assert_array_equal(padded, x[[0, 1, 2, 0, 1, 2, 0, 1]])
  np.testing.assert_array_equal(preprocess.pad_or_crop(x, 2), x[:2])
  np.testing.assert_array_equal(preprocess.pad_or_crop(x, 3), x)
  empty = preprocess.pad_or_crop(x[:0], 5)
  assert empty.shape == (5, 2, V, 3) and not empty.any()
  batch = np.stack([x, x + 1])
  np.testing.assert_array_equal(preprocess.pad_or_crop(batch, 7)[1],
                                preprocess.pad_or_crop(x + 1, 7))


def test_bones_are_child_minus_parent():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, 5, 2, V, 3))
  bone = preprocess.to_bone(x)
  assert bone.shape == x.shape
  assert len(preprocess.NTU_BONES_1BASED) == 24
  children = {c for c, _ in preprocess.NTU_BONES_1BASED}
  assert children == set(range(1, 26)) - {21}
  for child, parent in preprocess.NTU_BONES_1BASED:
    np.testing.assert_array_equal(bone[..., child - 1, :],
                                  x[..., child - 1, :] - x[..., parent - 1, :])
  assert not bone[..., CENTRE, :].any()
  # The same numbers as indexing the parents directly.
  parents = np.arange(V)
  for child, parent in preprocess.NTU_BONES_1BASED:
    parents[child - 1] = parent - 1
  assert bone.tobytes() == (x - x[..., parents, :]).tobytes()


def test_motion_is_next_minus_current_with_last_frame_zero():
  rng = np.random.default_rng(8)
  x = rng.normal(size=(3, 6, 2, V, 3))
  motion = preprocess.to_motion(x)
  np.testing.assert_allclose(motion[:, :-1], x[:, 1:] - x[:, :-1])
  assert not motion[:, -1].any()


def test_select_stream():
  rng = np.random.default_rng(9)
  x = rng.normal(size=(4, 2, V, 3)).astype(np.float32)
  assert preprocess.STREAMS == ('joint', 'bone', 'joint_motion', 'bone_motion')
  np.testing.assert_array_equal(preprocess.select_stream(x, 'joint'), x)
  np.testing.assert_array_equal(preprocess.select_stream(x, 'bone'),
                                preprocess.to_bone(x))
  np.testing.assert_array_equal(preprocess.select_stream(x, 'joint_motion'),
                                preprocess.to_motion(x))
  np.testing.assert_array_equal(
      preprocess.select_stream(x, 'bone_motion'),
      preprocess.to_motion(preprocess.to_bone(x)))
  with pytest.raises(ValueError, match='unknown stream'):
    preprocess.select_stream(x, 'velocity')
