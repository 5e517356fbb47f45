"""Tests for the synthetic NTU-format data: format, names, and that classes
differ by motion."""

import numpy as np
import pytest

from stbln_jax.data import ntu
from stbln_jax.data import preprocess
from stbln_jax.data import read_skeleton
from stbln_jax.data import skeleton as skeleton_lib
from stbln_jax.data import synthetic
import test_skeleton  # one body over a file: `track`


@pytest.fixture(scope='module')
def small_dataset(tmp_path_factory):
  out = tmp_path_factory.mktemp('synthetic')
  paths = synthetic.write_synthetic_dataset(
      out, num_classes=12, subjects=(1, 2), replications=(1, 2),
      frames=(30, 50), seed=3)
  return paths


def test_action_table():
  actions = synthetic.SYNTHETIC_ACTIONS
  assert len(actions) >= 10
  ids = [a.ntu_action for a in actions]
  assert len(set(ids)) == len(ids) and all(1 <= i <= 120 for i in ids)
  # The default 10 classes include at least two two-person interactions, and
  # those are NTU's interaction ids.
  assert sum(a.num_persons == 2 for a in actions[:10]) >= 2
  for a in actions:
    assert (a.num_persons == 2) == (a.ntu_action in ntu.MUTUAL_ACTIONS)
  assert synthetic.action_index(58) == ids.index(58)
  with pytest.raises(ValueError, match='not synthesised'):
    synthetic.action_index(5)  # drop: not synthesised


def test_files_round_trip_and_names_parse(small_dataset):
  paths = small_dataset
  assert len(paths) == 12 * 2 * 3 * 2
  actions = {a.ntu_action: a for a in synthetic.SYNTHETIC_ACTIONS}
  for path in paths:
    name = ntu.parse_sample_name(path)
    assert path.name == f'{name.name}.skeleton'
    assert name.setup == 1 and name.camera in (1, 2, 3)
    assert name.subject in (1, 2) and name.replication in (1, 2)
    assert name.action in actions
  data = paths[0].read_bytes()
  assert data.count(b'\r\n') == data.count(b'\n')  # CRLF like NTU
  for path in paths[::7]:
    skeleton = read_skeleton(path)
    sample = ntu.parse_sample_name(path)
    sequence = synthetic.generate_sequence(
        synthetic.action_index(sample.action), subject=sample.subject,
        camera=sample.camera, replication=sample.replication,
        setup=sample.setup, frames=(30, 50), seed=3)
    assert skeleton.num_frames == sequence.num_frames
    for body in sequence.bodies:
      present, xyz = test_skeleton.track(skeleton, body.body_id)
      np.testing.assert_array_equal(present, body.present)
      np.testing.assert_allclose(xyz[present], body.xyz[present], atol=5e-6,
                                 rtol=1e-6)


def test_file_contents_look_like_kinect(small_dataset):
  for path in small_dataset[:24]:
    rows = read_skeleton(path)
    xyz = rows.xyz
    assert np.all((xyz[..., 2] > 1.5) & (xyz[..., 2] < 5.5))
    depth, color = rows.joints[..., 3:5], rows.joints[..., 5:7]
    assert np.all((depth[..., 0] > -100) & (depth[..., 0] < 612))
    assert np.all((color[..., 1] > -200) & (color[..., 1] < 1280))
    quats = rows.joints[..., 7:11]
    norms = np.linalg.norm(quats, axis=-1)
    leaves = np.array([4, 16, 20, 22, 23, 24, 25]) - 1
    np.testing.assert_array_equal(norms[:, leaves], 0)
    others = np.setdiff1d(np.arange(25), leaves)
    np.testing.assert_allclose(norms[:, others], 1, atol=1e-5)
    assert set(np.unique(rows.joints[..., 11])) <= {1, 2}
    assert len(np.unique(rows.body_ids)) >= 1


def test_same_performance_under_every_camera():
  seqs = [synthetic.generate_sequence(4, subject=3, camera=c, seed=1)
          for c in (1, 2, 3)]
  lengths = [s.num_frames for s in seqs]
  assert max(lengths) - min(lengths) <= 6
  # After pre-normalisation, the views nearly agree: the views only rotate
  # the scene about the vertical axis.
  normalised = [preprocess.pre_normalize(
      np.stack([s.bodies[0].xyz, np.zeros_like(s.bodies[0].xyz)], 1))
                for s in seqs]
  t = min(lengths) - 6
  first_frames = [n[2:t, 0] for n in normalised]
  spread = np.abs(first_frames[1] - first_frames[0]).mean()
  assert spread < 0.08


def test_two_person_actions_and_spurious_bodies_select_the_performers():
  label = synthetic.action_index(56)  # giving something
  sequence = synthetic.generate_sequence(label, subject=2, camera=2, seed=5,
                                         spurious_rate=1.0, drop_rate=0.0)
  performers = [b for b in sequence.bodies if b.present.all()]
  assert len(performers) == 2 and len(sequence.bodies) == 3
  text = synthetic.to_skeleton_text(sequence)
  skeleton = skeleton_lib.parse_skeleton(text)
  chosen = preprocess.select_bodies(skeleton)
  for m in range(2):
    assert any(np.allclose(chosen[:, m], b.xyz, atol=1e-5) for b in performers)


def test_dropped_frames_have_no_body():
  for subject in range(1, 6):
    sequence = synthetic.generate_sequence(0, subject=subject, drop_rate=1.0,
                                           spurious_rate=0.0, seed=2)
    skeleton = skeleton_lib.parse_skeleton(synthetic.to_skeleton_text(sequence))
    counts = np.bincount(skeleton.frame_index, minlength=skeleton.num_frames)
    assert counts[0] == 1 and set(counts) == {0, 1}
    np.testing.assert_array_equal(counts == 1, sequence.bodies[0].present)


def _resampled_features(x, num=24):
  index = np.linspace(0, len(x) - 1, num).round().astype(int)
  return x[index].reshape(num, -1)


def _motion_joints(ntu_action, u):
  """(T, persons, 25, 3) scene joints of an action for a standard body."""
  action = synthetic.SYNTHETIC_ACTIONS[synthetic.action_index(ntu_action)]
  style = synthetic._Style(amplitude=1.0, cycles=1, phase=0.0, side=1.0)
  body = synthetic._Body()
  poses = action.motion(u, body, style)
  return np.stack([synthetic._forward_kinematics(p, body) for p in poses], 1)


def test_classes_differ_by_motion_not_by_a_static_pose():
  u = np.linspace(0, 1, 601)
  # Sit down / stand up and putting on / taking off a cap visit the same
  # poses in opposite order: the same time-averaged pose, different motion.
  for first, second in ((8, 9), (20, 21)):
    a, b = _motion_joints(first, u), _motion_joints(second, u)
    np.testing.assert_allclose(b, a[::-1], atol=1e-12)
    np.testing.assert_allclose(a.mean(0), b.mean(0), atol=1e-12)
    assert np.abs(a - b).mean(0).max() > 0.1, (first, second)
  # Eating is drinking repeated (hand to mouth and back, 2 times for this
  # style), and in giving something each person reaches as long as in a
  # handshake, one after the other: nearly the same time-averaged poses.
  for first, second in ((1, 2), (58, 56)):
    a, b = _motion_joints(first, u), _motion_joints(second, u)
    assert np.abs(a.mean(0) - b.mean(0)).max() < 0.03, (first, second)
    assert np.abs(a - b).mean(0).max() > 0.1, (first, second)
  # Every pair of classes differs in how the joints move.
  u = np.linspace(0, 1, 60)
  motions = {a.ntu_action: _motion_joints(a.ntu_action, u)
             for a in synthetic.SYNTHETIC_ACTIONS}
  velocity = {k: np.diff(v[:, 0], axis=0) for k, v in motions.items()}
  keys = sorted(velocity)
  for i, a in enumerate(keys):
    for b in keys[i + 1:]:
      assert np.abs(velocity[a] - velocity[b]).mean() > 1e-3, (a, b)
  # And each moves: no class is a held pose.
  for k, v in velocity.items():
    assert np.abs(v).sum(0).max() > 0.3, k


def test_nearest_neighbour_across_views_beats_chance(small_dataset):
  """Learnable: trained on cameras 2 and 3, a 1-nearest-neighbour on the
  pre-normalised sequences recognises camera 1 well above chance."""
  features, labels, cameras = [], [], []
  for path in small_dataset:
    name = ntu.parse_sample_name(path)
    x = preprocess.preprocess_skeleton(path)
    features.append(_resampled_features(x).ravel())
    labels.append(name.action)
    cameras.append(name.camera)
  features, labels, cameras = map(np.asarray, (features, labels, cameras))
  train, test = cameras != 1, cameras == 1
  a, b = features[test], features[train]
  dist = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T
  accuracy = np.mean(labels[train][dist.argmin(1)] == labels[test])
  assert accuracy > 0.6  # chance is 1/12


def test_arguments_are_checked(tmp_path):
  with pytest.raises(ValueError, match='num_classes'):
    synthetic.write_synthetic_dataset(tmp_path, num_classes=13)
  with pytest.raises(ValueError, match='camera'):
    synthetic.generate_sequence(0, camera=4)
  with pytest.raises(ValueError, match='label'):
    synthetic.generate_sequence(12)


def _cross_view_ridge(features, labels, cameras, lam=1.0):
  """Ridge regression onto one-hot labels, trained on cameras 2 and 3 and
  scored on camera 1 (standardised features)."""
  train, test = cameras != 1, cameras == 1
  mean, std = features[train].mean(0), features[train].std(0) + 1e-6
  a, b = (features[train] - mean) / std, (features[test] - mean) / std
  targets = np.eye(labels.max() + 1)[labels[train]]
  weights = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]),
                            a.T @ (targets - targets.mean(0)))
  return np.mean((b @ weights).argmax(1) == labels[test])


def test_time_averaged_pose_does_not_tell_the_classes_apart():
  """The default ten classes differ by motion, not by a static pose: across
  views, a linear classifier on the time-averaged pose stays far below the
  same classifier on the sequence resampled in time with its speeds."""
  static, motion, labels, cameras = [], [], [], []
  for camera in (1, 2, 3):
    for subject in range(1, 5):
      for label in range(10):
        sequence = synthetic.generate_sequence(label, subject=subject,
                                               camera=camera, seed=1)
        x = preprocess.preprocess_skeleton(skeleton_lib.parse_skeleton(
            synthetic.to_skeleton_text(sequence), dtype=np.float64))
        index = np.linspace(0, len(x) - 1, 17).round().astype(int)
        speed = np.abs(np.diff(x, axis=0))
        static.append(x.mean(0).ravel())
        motion.append(np.concatenate([
            x[index[1:]].ravel(), np.abs(np.diff(x[index], axis=0)).ravel(),
            speed.mean(0).ravel()]))
        labels.append(label)
        cameras.append(camera)
  static, motion, labels, cameras = map(
      np.asarray, (static, motion, labels, cameras))
  static_accuracy = _cross_view_ridge(static, labels, cameras)
  motion_accuracy = _cross_view_ridge(motion, labels, cameras)
  assert static_accuracy <= 0.5, static_accuracy  # chance is 0.1
  assert motion_accuracy >= 0.8, motion_accuracy
