"""Tests for the synthetic COCO-17 2D keypoints: the annotation pickle's schema,
the camera, missed detections, determinism and the splits."""

import dataclasses
import pickle

import numpy as np
import pytest

from stbln_jax.data import layouts
from stbln_jax.data import ntu
from stbln_jax.data import synthetic
from stbln_jax.data import synthetic_keypoints as sk

NUM_CLASSES = 12
SUBJECTS = (1, 3)  # one cross-subject training subject, one held out


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  path = tmp_path_factory.mktemp('keypoints') / 'synthetic.pkl'
  data = sk.write_synthetic_annotations(
      path, num_classes=NUM_CLASSES, subjects=SUBJECTS, frames=(30, 50), seed=3)
  return path, data


def test_schema_is_mmaction2s(written):
  path, data = written
  with open(path, 'rb') as f:
    loaded = pickle.load(f)
  assert set(loaded) == {'split', 'annotations'}
  annotations = loaded['annotations']
  assert len(annotations) == NUM_CLASSES * len(SUBJECTS) * 3 * 2
  assert [a['frame_dir'] for a in annotations] == [
      a['frame_dir'] for a in data['annotations']]
  for a in annotations:
    assert set(a) == {'frame_dir', 'label', 'img_shape', 'original_shape',
                      'total_frames', 'keypoint', 'keypoint_score'}
    assert isinstance(a['frame_dir'], str) and isinstance(a['label'], int)
    assert isinstance(a['total_frames'], int)
    assert a['img_shape'] == a['original_shape'] == (1080, 1920)
    assert a['keypoint'].dtype == np.float32
    assert a['keypoint_score'].dtype == np.float32
    num_persons = a['keypoint'].shape[0]
    assert a['keypoint'].shape == (num_persons, a['total_frames'], 17, 2)
    assert a['keypoint_score'].shape == a['keypoint'].shape[:3]
    assert 30 - 3 <= a['total_frames'] <= 50 + 3
    assert np.all((a['keypoint_score'] >= 0) & (a['keypoint_score'] <= 1))
    # Detected joints lie in the image.
    seen = a['keypoint_score'] > 0
    assert np.all((a['keypoint'][seen] >= 0)
                  & (a['keypoint'][seen] < [1920, 1080]))
    # The label is the generator's class; the name carries its NTU action.
    action = synthetic.SYNTHETIC_ACTIONS[a['label']]
    assert ntu.parse_sample_name(a['frame_dir']).action == action.ntu_action
    assert num_persons >= action.num_persons
  assert sorted({a['label'] for a in annotations}) == list(range(NUM_CLASSES))
  classes = (path.parent / 'classes.txt').read_text().splitlines()
  assert classes == [a.name for a in synthetic.SYNTHETIC_ACTIONS[:NUM_CLASSES]]


def test_projection_lands_on_the_expected_pixel():
  # x is towards the camera's left: a point left of and above the axis at 2 m.
  pixels = sk.project(np.array([[0.5, 0.2, 2.0], [0.0, 0.0, 3.0]]))
  np.testing.assert_allclose(pixels, [[960 - 1060 * 0.25, 540 - 1060 * 0.1],
                                      [960, 540]])
  # A subject facing the camera has their right shoulder on the image's left,
  # their nose nearer the camera than their ears.
  sequence = synthetic.generate_sequence(0, camera=1, seed=0, noise=0.0)
  body = sequence.bodies[0]
  joints = sk.coco17_from_ntu25(body.xyz)
  name = layouts.COCO17.joint_names.index
  pixels = sk.project(joints)
  assert np.all(pixels[:, name('right_shoulder'), 0]
                < pixels[:, name('left_shoulder'), 0])
  assert np.all(joints[:, name('nose'), 2] < joints[:, name('left_ear'), 2])
  assert np.all(pixels[:, name('nose'), 1] < pixels[:, name('left_hip'), 1])
  for coco, kinect in (('left_wrist', 'WristLeft'), ('right_knee', 'KneeRight')):
    np.testing.assert_array_equal(joints[:, name(coco)],
                                  body.xyz[:, ntu.JOINT_NAMES.index(kinect)])


def test_keypoints_are_the_projected_joints_plus_noise():
  sequence = synthetic.generate_sequence(3, camera=2, seed=1, noise=0.0)
  annotation = sk.to_annotation(sequence, seed=1, pixel_noise=2.0)
  expected = sk.project(sk.coco17_from_ntu25(sequence.bodies[0].xyz))
  seen = annotation['keypoint_score'][0] > 0
  error = np.abs(annotation['keypoint'][0] - expected)[seen]
  assert error.max() < 6 * 2.5 * 2.0  # six sigma of a joint turned away
  assert 0.5 < error.std() < 5.0  # the noise is there


def test_missed_detections_have_score_and_coordinates_zero(written):
  _, data = written
  scores = np.concatenate([a['keypoint_score'].ravel()
                           for a in data['annotations']])
  missed = scores == 0
  assert 0.005 < missed.mean() < 0.5  # some, not most
  for a in data['annotations']:
    zero = a['keypoint_score'] == 0
    np.testing.assert_array_equal(a['keypoint'][zero], 0)
    assert np.all(a['keypoint'][~zero].any(-1))
  # Frames the 3D generator dropped have no person at all.
  sequence = synthetic.generate_sequence(0, seed=0, noise=0.0, drop_rate=1.0)
  annotation = sk.to_annotation(sequence, seed=0)
  dropped = ~sequence.bodies[0].present
  assert dropped.any()
  np.testing.assert_array_equal(annotation['keypoint_score'][0, dropped], 0)
  # A body out of the picture is not detected.
  body = sequence.bodies[0]
  away = dataclasses.replace(body, xyz=body.xyz + [8.0, 0.0, 0.0])
  annotation = sk.to_annotation(
      dataclasses.replace(sequence, bodies=(away,)), seed=0)
  np.testing.assert_array_equal(annotation['keypoint_score'], 0)
  np.testing.assert_array_equal(annotation['keypoint'], 0)


def test_joints_turned_away_score_lower():
  # Replication 1 under camera 2 shows the body nearly in profile (75 degrees).
  sequence = synthetic.generate_sequence(3, camera=2, replication=1, seed=0,
                                         noise=0.0, drop_rate=0.0)
  scores = sk.to_annotation(sequence, seed=0)['keypoint_score'][0]
  name = layouts.COCO17.joint_names.index
  left = [name(n) for n in ('left_shoulder', 'left_hip', 'left_knee')]
  right = [name(n) for n in ('right_shoulder', 'right_hip', 'right_knee')]
  near, far = sorted([scores[:, left].mean(), scores[:, right].mean()])[::-1]
  assert near > 0.8 and far < 0.7


def test_same_seed_same_file(tmp_path):
  kwargs = dict(num_classes=2, subjects=(2,), frames=(20, 30))
  a = tmp_path / 'a' / 'x.pkl'
  b = tmp_path / 'b' / 'x.pkl'
  c = tmp_path / 'c' / 'x.pkl'
  sk.write_synthetic_annotations(a, seed=5, **kwargs)
  sk.write_synthetic_annotations(b, seed=5, **kwargs)
  sk.write_synthetic_annotations(c, seed=6, **kwargs)
  assert a.read_bytes() == b.read_bytes()
  assert a.read_bytes() != c.read_bytes()


def test_splits_partition_by_camera_and_subject(written):
  _, data = written
  split = data['split']
  assert set(split) == {'xview_train', 'xview_val', 'xsub_train', 'xsub_val'}
  everything = sorted(a['frame_dir'] for a in data['annotations'])
  for benchmark in ('xview', 'xsub'):
    train, val = split[f'{benchmark}_train'], split[f'{benchmark}_val']
    assert not set(train) & set(val)
    assert sorted(train + val) == everything
  camera = lambda d: ntu.parse_sample_name(d).camera  # noqa: E731
  subject = lambda d: ntu.parse_sample_name(d).subject  # noqa: E731
  assert {camera(d) for d in split['xview_train']} == {2, 3}
  assert {camera(d) for d in split['xview_val']} == {1}
  assert {subject(d) for d in split['xsub_train']} == {1}
  assert {subject(d) for d in split['xsub_val']} == {3}


def test_bad_num_classes():
  with pytest.raises(ValueError, match='num_classes'):
    sk.write_synthetic_annotations('/nonexistent/x.pkl', num_classes=13)


def test_demo_config_matches_the_pickle():
  from configs import coco17_demo  # pylint: disable=g-import-not-at-top
  config = coco17_demo.get_config()
  layout = layouts.get_layout(config.model.layout)
  assert config.model.num_joints == layout.num_joints == sk.NUM_JOINTS
  assert config.model.in_channels == 3  # x, y, score
  assert config.dataset == 'pose_annotations/coco17_2d'
  assert (config.train_split, config.eval_split) == ('xview_train', 'xview_val')
  assert config.synthetic.format == 'coco17_pickle'
  config.synthetic.num_classes = 4
  assert config.model.num_classes == 4


def test_demo_rejects_an_unknown_format(tmp_path):
  from configs import demo as demo_config  # pylint: disable=g-import-not-at-top
  from stbln_jax import demo  # pylint: disable=g-import-not-at-top
  from stbln_jax import models  # pylint: disable=g-import-not-at-top
  config = demo_config.get_config()
  config.synthetic.format = 'png'
  with pytest.raises(models.ConfigError, match="synthetic.format='png'"):
    demo.prepare_data(config, str(tmp_path))
