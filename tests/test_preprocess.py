"""Tests for body selection, 2s-AGCN pre-normalisation, padding and streams."""

import math

import numpy as np
import pytest

from stbln_jax.data import ntu
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


def _skeleton_from_tracks(tracks, num_frames, dtype=np.float32):
  """A `Skeleton` with one body per (body_id, present, xyz (T, 25, 3)),
  listed in each frame in the order given."""
  rows = [(t, i, xyz[t]) for t in range(num_frames)
          for i, present, xyz in tracks if present[t]]
  return skeleton_lib.Skeleton(
      path='made-up', num_frames=num_frames,
      frame_index=np.array([t for t, _, _ in rows], np.int64),
      body_ids=np.array([i for _, i, _ in rows], np.int64),
      xyz=np.array([x for _, _, x in rows], dtype).reshape(-1, V, 3))


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
  assert preprocess.motion_energy(track) == pytest.approx(expected)
  assert preprocess.motion_energy(np.zeros((4, V, 3))) == 0.0


def test_single_body_leaves_second_person_zero(ntu_samples_dir):
  skeleton = read_skeleton(ntu_samples_dir / 'S001C001P001R001A011.skeleton')
  out = preprocess.select_bodies(skeleton)
  assert out[:, 0].any() and not out[:, 1].any()


def test_two_person_file_keeps_both(ntu_samples_dir):
  skeleton = read_skeleton(ntu_samples_dir / 'S001C003P008R002A058.skeleton')
  out = preprocess.select_bodies(skeleton)
  ids = tuple(dict.fromkeys(skeleton.body_ids.tolist()))
  import test_skeleton  # pylint: disable=g-import-not-at-top
  firsts = {i: test_skeleton.track(skeleton, i)[1] for i in ids}
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


@pytest.mark.parametrize('preprocessing', preprocess.PREPROCESSINGS)
def test_preprocess_skeleton_on_real_files(ntu_samples_dir, preprocessing):
  out = preprocess.preprocess_skeleton(
      ntu_samples_dir / 'S001C003P008R002A058.skeleton', preprocessing)
  assert out.shape == (70, 2, V, 3) and out.dtype == np.float32
  assert out[:, 1].any()
  # A path is read in float64 for '2s-agcn' (2s-AGCN's energies), float32
  # for 'tracked'.
  dtype = np.float64 if preprocessing == '2s-agcn' else np.float32
  skeleton = read_skeleton(ntu_samples_dir / 'S001C001P001R001A011.skeleton',
                           dtype)
  assert preprocess.preprocess_skeleton(
      skeleton, preprocessing).tobytes() == preprocess.preprocess_skeleton(
          skeleton.path, preprocessing).tobytes()


def test_unknown_preprocessing_is_a_clear_error(ntu_samples_dir):
  with pytest.raises(ValueError, match="unknown preprocessing 'ids'"):
    preprocess.preprocess_skeleton(
        ntu_samples_dir / 'S001C001P001R001A011.skeleton', 'ids')


@pytest.mark.parametrize('preprocessing', preprocess.PREPROCESSINGS)
def test_no_skeleton_is_a_clear_error(ntu_samples_dir, preprocessing):
  path = ntu_samples_dir / 'S001C002P006R001A008.skeleton'
  with pytest.raises(preprocess.NoSkeletonError, match='no body') as info:
    preprocess.preprocess_skeleton(path, preprocessing)
  assert isinstance(info.value, skeleton_lib.SkeletonFormatError)
  assert info.value.path == str(path)


@pytest.mark.parametrize('preprocessing', preprocess.PREPROCESSINGS)
def test_bodies_all_at_zero_are_no_skeleton(preprocessing):
  skeleton = _skeleton_from_tracks(
      [(3, np.ones(5, bool), np.zeros((5, V, 3)))], 5, np.float64)
  with pytest.raises(preprocess.NoSkeletonError, match='exactly zero'):
    preprocess.preprocess_skeleton(skeleton, preprocessing)


def test_preprocess_skeleton_is_the_full_reader_bit_for_bit(ntu_samples_dir,
                                                           tmp_path):
  from stbln_jax.data import synthetic
  paths = sorted(p for p in ntu_samples_dir.glob('*.skeleton')
                 if len(read_skeleton(p).body_ids))
  paths += synthetic.write_synthetic_dataset(
      tmp_path, num_classes=12, subjects=(1, 2), cameras=(2,),
      replications=(2,), frames=(90, 110), seed=5)
  assert len(paths) == 5 + 24
  for path in paths:
    for preprocessing, dtype in (('2s-agcn', np.float64),
                                 ('tracked', np.float32)):
      out = preprocess.preprocess_skeleton(path, preprocessing)
      want = preprocess.preprocess_skeleton(read_skeleton(path, dtype),
                                            preprocessing)
      assert out.dtype == want.dtype and out.shape == want.shape, path
      assert out.tobytes() == want.tobytes(), path
  # 'tracked' is the clip-length normalisation of the ID-followed bodies.
  np.testing.assert_array_equal(
      preprocess.preprocess_skeleton(paths[0], 'tracked'),
      preprocess.pre_normalize(preprocess.select_bodies(
          read_skeleton(paths[0]))))


def test_select_bodies_takes_coordinates_only(ntu_samples_dir):
  for name in ('S001C001P001R001A011', 'S001C003P008R002A058'):
    path = ntu_samples_dir / f'{name}.skeleton'
    skeleton = read_skeleton(path)
    np.testing.assert_array_equal(
        preprocess.select_bodies(read_skeleton(path, xyz_only=True)),
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


# ---- 2s-AGCN's preprocessing ('2s-agcn') -----------------------------------

def _2s_agcn_reference(path, max_frames=300):
  """2s-AGCN's `ntu_gendata.read_xyz` and `preprocess.pre_normalization`
  for one file, step by step: float64 slots read line by line, 2 of 4 kept
  by energy, then a float32 (M, 300, V, 3) buffer padded, centred and turned
  frame by frame and joint by joint. Returns (300, M, V, 3)."""
  lines = iter(path.read_text().split('\n'))
  num_frames = int(next(lines))
  slots = np.zeros((4, num_frames, V, 3))
  for t in range(num_frames):
    for m in range(int(next(lines))):
      next(lines)  # the body line
      assert int(next(lines)) == V
      for j in range(V):
        values = next(lines).split()
        if m < 4:
          slots[m, t, j] = [float(v) for v in values[:3]]
  energy = []
  for slot in slots:
    valid = slot[slot.sum(-1).sum(-1) != 0]
    energy.append(0 if len(valid) == 0 else sum(valid[:, :, c].std()
                                                for c in range(3)))
  s = np.zeros((2, max_frames, V, 3), np.float32)
  s[:, :num_frames] = slots[np.argsort(-np.array(energy), kind='stable')[:2]]
  for i, person in enumerate(s):
    if person.sum() == 0:
      continue
    if person[0].sum() == 0:
      kept = person[person.sum(-1).sum(-1) != 0].copy()
      person[:] = 0
      person[:len(kept)] = kept
    for f in range(max_frames):
      if person[f].sum() == 0 and person[f:].sum() == 0:
        rest = max_frames - f
        s[i, f:] = np.concatenate([person[:f]] * math.ceil(rest / f))[:rest]
        break
  centre = s[0, :, SPINE_MID:SPINE_MID + 1].copy()
  for i, person in enumerate(s):
    if person.sum() != 0:
      s[i] = (person - centre) * (person.sum(-1) != 0)[..., None]
  for first, second, target in ((SPINE_BASE, SPINE_MID, [0, 0, 1]),
                                (L_SHOULDER, R_SHOULDER, [1, 0, 0])):
    v = s[0, 0, second] - s[0, 0, first]
    axis, angle = np.cross(v, target), 0.0
    if np.abs(v).sum() >= 1e-6:
      angle = np.arccos(np.clip(np.dot(_unit(v), target), -1, 1))
    rotation = np.eye(3)
    if np.abs(axis).sum() >= 1e-6 and abs(angle) >= 1e-6:
      # Euler-Rodrigues, from the unit axis and the half angle.
      a, (b, c, d) = math.cos(angle / 2), -_unit(axis) * math.sin(angle / 2)
      rotation = np.array(
          [[a*a + b*b - c*c - d*d, 2 * (b*c + a*d), 2 * (b*d - a*c)],
           [2 * (b*c - a*d), a*a + c*c - b*b - d*d, 2 * (c*d + a*b)],
           [2 * (b*d + a*c), 2 * (c*d - a*b), a*a + d*d - b*b - c*c]])
    for i, person in enumerate(s):
      for f, frame in enumerate(person):
        if person.sum() != 0 and frame.sum() != 0:
          for j, joint in enumerate(frame):
            s[i, f, j] = np.dot(rotation, joint)
  return s.transpose(1, 0, 2, 3)


def _assert_2s_agcn(path, reference=None):
  """`preprocess_skeleton(path)` repeated to 300 frames is 2s-AGCN's sample
  (up to one float32 rounding of the rotated coordinates)."""
  out = preprocess.preprocess_skeleton(path)
  reference = _2s_agcn_reference(path) if reference is None else reference
  full = preprocess.pad_or_crop(out, 300)
  np.testing.assert_array_equal(full == 0, reference == 0)
  np.testing.assert_allclose(full, reference, rtol=0, atol=1e-6)
  return out


def _rewrite_frames(path, out, edit):
  """Writes to `out` the file `path` with `edit(t, bodies)` applied to the
  bodies (lists of 27 lines) of every frame t."""
  lines = path.read_bytes().split(b'\r\n')
  text, at = [lines[0]], 1
  for t in range(int(lines[0])):
    count = int(lines[at])
    bodies = [lines[at + 1 + 27 * b:at + 28 + 27 * b] for b in range(count)]
    at += 1 + 27 * count
    bodies = edit(t, bodies)
    text += [str(len(bodies)).encode()] + [x for body in bodies for x in body]
  out.write_bytes(b'\r\n'.join(text + lines[at:]))
  return out


@pytest.mark.parametrize('name', ['S001C001P001R001A011',
                                  'S001C003P008R002A058',
                                  'S002C001P003R001A003',
                                  'S003C001P015R001A034',
                                  'S004C002P003R001A017'])
def test_2s_agcn_matches_2s_agcn_on_real_files(ntu_samples_dir, name):
  path = ntu_samples_dir / f'{name}.skeleton'
  out = _assert_2s_agcn(path)
  # Every person is as long as the clip: the record is the clip.
  assert len(out) == read_skeleton(path).num_frames


def test_2s_agcn_keeps_body_slots_when_a_body_id_changes(ntu_samples_dir,
                                                           tmp_path):
  """From frame 30 on, the first body of the two-person file has another
  tracking ID: 2s-AGCN's slots do not see it, 'tracked' makes it a third
  body."""
  original = ntu_samples_dir / 'S001C003P008R002A058.skeleton'

  def new_id(t, bodies):
    if t >= 30:
      bodies[0] = [b'72057594037949999 ' + bodies[0][0].split(b' ', 1)[1]
                   ] + bodies[0][1:]
    return bodies

  path = _rewrite_frames(original, tmp_path / 'switch.skeleton', new_id)
  assert len(set(read_skeleton(path).body_ids.tolist())) == 3
  out = _assert_2s_agcn(path)
  assert out.tobytes() == preprocess.preprocess_skeleton(original).tobytes()
  tracked = preprocess.preprocess_skeleton(path, 'tracked')
  assert not np.allclose(tracked, out, atol=1e-3)


def test_2s_agcn_repeats_each_person_on_its_own(ntu_samples_dir, tmp_path):
  """The second body is gone from the last 12 of the 70 frames: 2s-AGCN
  repeats its 58 frames and the first person's 70 frames each to 300, so
  the record is the whole 300-frame sample; 'tracked' keeps 70 frames."""
  original = ntu_samples_dir / 'S001C003P008R002A058.skeleton'
  path = _rewrite_frames(original, tmp_path / 'unequal.skeleton',
                         lambda t, bodies: bodies[:1] if t >= 58 else bodies)
  reference = _2s_agcn_reference(path)
  out = _assert_2s_agcn(path, reference)
  assert out.shape == (300, 2, V, 3)  # lcm(70, 58) > 300
  second = 1 if reference[0, 1].any() else 0
  assert reference[58:, second].any()
  assert len(preprocess.preprocess_skeleton(path, 'tracked')) == 70
  # Repeating the clip's 70 frames instead gives another sample.
  assert not np.allclose(preprocess.pad_or_crop(out[:70], 300), reference,
                         atol=1e-3)


def test_2s_agcn_record_is_one_period():
  """Persons of 10 and 4 frames: the sample repeats after 20 frames."""
  rng = np.random.default_rng(12)
  first, second = np.zeros((10, V, 3)), np.zeros((10, V, 3))
  first[:] = _orthogonal_person(rng, 10)
  second[:4] = rng.normal(0, 0.3, (4, V, 3)) + [1.0, 0.0, 3.0]
  skeleton = _skeleton_from_tracks(
      [(1, np.ones(10, bool), first), (2, np.arange(10) < 4, second)], 10,
      np.float64)
  out = preprocess.preprocess_skeleton(skeleton)
  assert out.shape == (20, 2, V, 3)
  buffer = np.zeros((2, 300, V, 3), np.float32)
  buffer[:, :10] = preprocess.select_slots(preprocess.body_slots(skeleton))
  full = preprocess.pre_normalization_2s_agcn(buffer)
  np.testing.assert_array_equal(preprocess.pad_or_crop(out, 300), full)
  # The second person goes round every 4 frames (its shape; frames are
  # centred on the first person).
  shape = full[:, 1] - full[:, 1, :1]
  np.testing.assert_allclose(shape[4:300], shape[0:296], atol=1e-5)


def test_body_slots_follow_the_order_in_each_frame():
  rng = np.random.default_rng(13)
  tracks = [(i, np.ones(3, bool), rng.normal(size=(3, V, 3)))
            for i in range(5)]
  skeleton = _skeleton_from_tracks(tracks, 3)
  slots = preprocess.body_slots(skeleton)
  assert slots.shape == (4, 3, V, 3)
  for b in range(4):  # the fifth body of each frame is dropped
    np.testing.assert_array_equal(slots[b], tracks[b][2].astype(np.float32))
  # Bodies present in some frames only: the slot is the place in the frame.
  partly = np.array([False, True, True])
  skeleton = _skeleton_from_tracks(
      [(7, partly, tracks[0][2]), (8, np.ones(3, bool), tracks[1][2])], 3)
  slots = preprocess.body_slots(skeleton)
  np.testing.assert_array_equal(slots[0, 0], tracks[1][2][0].astype(
      np.float32))
  np.testing.assert_array_equal(slots[0, 1:], tracks[0][2][1:].astype(
      np.float32))
  assert not slots[1, 0].any()


def test_select_slots_ranks_by_energy():
  rng = np.random.default_rng(14)
  slots = np.zeros((4, 6, V, 3))
  slots[0] = rng.normal(0, 0.1, (6, V, 3))
  slots[2] = rng.normal(0, 1.0, (6, V, 3))
  slots[3] = slots[0]
  chosen = preprocess.select_slots(slots)
  np.testing.assert_array_equal(chosen[0], slots[2])
  np.testing.assert_array_equal(chosen[1], slots[0])  # a tie keeps order
  assert preprocess.motion_energy(slots[1]) == 0.0


def test_axis_angle_rotation_is_2s_agcns():
  rng = np.random.default_rng(15)
  for _ in range(10):
    axis, angle = rng.normal(size=3), rng.uniform(-3, 3)
    r = preprocess.axis_angle_rotation(axis, angle)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(r @ axis, axis, atol=1e-12)
    # The same turn as Rodrigues' formula about the unit axis.
    k = _unit(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    np.testing.assert_allclose(
        r, np.eye(3) + np.sin(angle) * cross
        + (1 - np.cos(angle)) * cross @ cross, atol=1e-12)
  np.testing.assert_array_equal(
      preprocess.axis_angle_rotation([1e-7, 0, 0], 1.0), np.eye(3))


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
  assert len(ntu.NTU_BONES_1BASED) == 24
  children = {c for c, _ in ntu.NTU_BONES_1BASED}
  assert children == set(range(1, 26)) - {21}
  for child, parent in ntu.NTU_BONES_1BASED:
    np.testing.assert_array_equal(bone[..., child - 1, :],
                                  x[..., child - 1, :] - x[..., parent - 1, :])
  assert not bone[..., CENTRE, :].any()
  # The same numbers as indexing the parents directly.
  parents = np.arange(V)
  for child, parent in ntu.NTU_BONES_1BASED:
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


def test_centring_subtracts_a_joint_of_the_first_frame_from_every_frame():
  rng = np.random.default_rng(10)
  x = rng.normal(size=(5, 2, 20, 3)).astype(np.float32)
  centred = preprocess.center_on_first_frame(x, 1)
  np.testing.assert_allclose(centred, x - x[0, 0, 1], rtol=1e-6)
  assert not centred[0, 0, 1].any() and centred.dtype == np.float32
  # A score channel is left alone.
  scored = preprocess.center_on_first_frame(x, 3, 'xys')
  np.testing.assert_allclose(scored[..., :2], x[..., :2] - x[0, 0, 3, :2], rtol=1e-6)
  np.testing.assert_array_equal(scored[..., 2], x[..., 2])


def test_min_max_maps_each_coordinate_of_the_clip_onto_minus_one_to_one():
  rng = np.random.default_rng(11)
  x = rng.normal(size=(7, 1, 20, 3)).astype(np.float32) * [1.0, 2.0, 0.5]
  out = preprocess.min_max(x)
  flat = out.reshape(-1, 3)
  np.testing.assert_allclose(flat.min(0), -1.0, atol=1e-6)
  np.testing.assert_allclose(flat.max(0), 1.0, atol=1e-6)
  low, high = x.reshape(-1, 3).min(0), x.reshape(-1, 3).max(0)
  np.testing.assert_allclose(out, (x - low) / (high - low) * 2 - 1, rtol=1e-5, atol=1e-6)
  # A shift and a positive scale per axis change nothing (so centring before it does
  # not either); a single frame still spans [-1, 1] over its joints.
  np.testing.assert_allclose(preprocess.min_max(x * [3.0, 0.5, 2.0] + [1.0, -4.0, 9.0]),
                             out, atol=1e-5)
  np.testing.assert_allclose(preprocess.min_max(x[:1]).reshape(-1, 3).max(0), 1.0,
                             atol=1e-6)
  # A coordinate that never varies becomes 0; a score channel is left alone.
  x[..., 2] = 0.25
  out = preprocess.min_max(x, 'xys')
  np.testing.assert_array_equal(out[..., 2], x[..., 2])
  flat = preprocess.min_max(x).reshape(-1, 3)
  assert np.isfinite(flat).all() and not flat[:, 2].any()
