"""PYSKL/MMAction2 annotation files and OpenPose JSON: the readers and the
`pose_annotations` builder.

Each dataset is written by hand here in the documented schema, built with
`build_dataset` and read back with `tfds.data_source`; expected arrays are
computed from the written pixels with PYSKL's formula, not by the code under
test.
"""

import json
import os
import pathlib
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stbln_jax.data import annotations
from stbln_jax.data import build
from stbln_jax.data import layouts
from stbln_jax.data import openpose

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
H, W = 480, 640


def _records(data_dir, dataset, *splits):
  """{name: record} of the splits' records together."""
  records = {}
  for split in splits:
    source = tfds.data_source(dataset, split=split, data_dir=data_dir,
                              download=False)
    records.update((r['name'].decode(), r)
                   for r in (source[i] for i in range(len(source))))
  return records


def normalised(xy, score=None, h=H, w=W):
  """PYSKL's PreNormalize2D ('fix'): centre and halve by the frame size; a
  keypoint scored <= 0.01 is zero."""
  out = np.stack([(xy[..., 0] - w / 2) / (w / 2),
                  (xy[..., 1] - h / 2) / (h / 2)], -1)
  if score is not None:
    out[score <= 0.01] = 0
  return out.astype(np.float32)


def mmaction_annotation(frame_dir, num_frames, label, num_persons=2, seed=0,
                        num_joints=17, img_shape=(H, W)):
  """One annotation with MMAction2's keys and dtypes."""
  rng = np.random.default_rng(seed)
  h, w = img_shape
  keypoint = rng.uniform(0, 1, (num_persons, num_frames, num_joints, 2))
  keypoint *= np.array([w, h])
  return {
      'frame_dir': frame_dir,
      'label': label,
      'img_shape': img_shape,
      'original_shape': img_shape,
      'total_frames': num_frames,
      'keypoint': keypoint.astype(np.float32),
      'keypoint_score': rng.uniform(0.02, 1, (num_persons, num_frames,
                                              num_joints)).astype(np.float32),
  }


def write_pickle(path, split, annotation_list):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'wb') as f:
    pickle.dump({'split': split, 'annotations': annotation_list}, f)
  return path


# ---- (a) a three-sample file in MMAction2's schema -----------------------------


@pytest.fixture(scope='module')
def three(tmp_path_factory):
  root = tmp_path_factory.mktemp('three')
  samples = [mmaction_annotation('S001C001P001R001A001', 6, 0, seed=1),
             mmaction_annotation('clip_b', 4, 2, num_persons=1, seed=2),
             # Three persons, 1080p (no img_shape: the default).
             mmaction_annotation('clip_c', 5, 1, num_persons=3, seed=3,
                                 img_shape=(1080, 1920))]
  del samples[2]['img_shape']
  samples[0]['keypoint_score'][1, 2, 4] = 0.005  # undetected: x = y = 0
  samples[2]['keypoint_score'][1] *= 0.01  # the least sure person: cut
  write_pickle(root / 'raw' / 'mini.pkl',
               {'xsub_train': ['S001C001P001R001A001', 'clip_c'],
                'xsub_val': ['clip_b']}, samples)
  (root / 'raw' / 'classes.txt').write_text('drink water\nwave\nclap\n')
  summary = build.build_dataset('pose_annotations/coco17_2d',
                                manual_dir=root / 'raw',
                                data_dir=root / 'tfds', quiet=True, max_persons=2)
  return samples, summary, root / 'tfds'


def test_mmaction_file_builds_and_reads_back_normalised(three):
  samples, summary, data_dir = three
  assert summary.examples == {'xsub_train': 2, 'xsub_val': 1}
  assert summary.skipped == [] and summary.num_files == 3
  records = _records(data_dir, 'pose_annotations/coco17_2d', 'xsub_train', 'xsub_val')
  assert sorted(records) == sorted(s['frame_dir'] for s in samples)
  for sample in samples:
    record = records[sample['frame_dir']]
    h, w = sample.get('img_shape', (1080, 1920))
    score = sample['keypoint_score']
    # Persons by total score, best first; the third dropped, a missing one zero.
    order = np.argsort(-score.sum((1, 2)), kind='stable')[:2]
    expected = np.zeros((sample['total_frames'], 2, 17, 3), np.float32)
    for slot, person in enumerate(order):
      expected[:, slot, :, :2] = normalised(sample['keypoint'][person],
                                            score[person], h, w)
      expected[:, slot, :, 2] = score[person]
    np.testing.assert_allclose(record['skeleton'], expected, atol=1e-6)
    assert record['label'] == sample['label']
    assert record['num_frames'] == sample['total_frames']
  s0 = records['S001C001P001R001A001']['skeleton']
  slot = list(np.argsort(-samples[0]['keypoint_score'].sum((1, 2)))).index(1)
  assert (s0[2, slot, 4, :2] == 0).all() and s0[2, slot, 4, 2] == np.float32(0.005)
  assert (records['clip_b']['skeleton'][:, 1] == 0).all()


def test_dataset_info_names_layout_and_channels(three):
  _, _, data_dir = three
  builder = tfds.builder('pose_annotations/coco17_2d', data_dir=data_dir)
  assert builder.info.features['label'].names == ['drink water', 'wave', 'clap']
  assert builder.info.features['skeleton'].shape == (None, None, 17, 3)
  assert dict(builder.info.metadata.items()) == {
      'layout': 'coco17', 'custom_layout': None, 'channels': 'xys', 'num_persons': 2,
      'preprocessing': None}
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD


def test_kinds_give_their_channels(three):
  samples, _, _ = three
  sample = samples[1]
  xy = annotations.to_sample(sample, 'coco17', '2d_xy')
  assert xy.shape == (4, 2, 17, 2) and xy.dtype == np.float32
  np.testing.assert_allclose(
      xy[:, 0], normalised(sample['keypoint'][0], sample['keypoint_score'][0]),
      atol=1e-6)
  xyz = {**sample, 'keypoint': np.arange(2 * 4 * 17 * 3, dtype=np.float32
                                         ).reshape(2, 4, 17, 3)}
  xyz['keypoint'][0] = 0  # no motion: the other person comes first
  out = annotations.to_sample(xyz, 'coco17', '3d')
  np.testing.assert_array_equal(out[:, 0], xyz['keypoint'][1])
  np.testing.assert_array_equal(out[:, 1], 0)
  assert annotations.to_sample(xyz, 'coco17', '3d', num_persons=1).shape == (
      4, 1, 17, 3)


def test_configs_cover_every_layout_and_kind():
  builder = tfds.builder_cls('pose_annotations')
  names = sorted(c.name for c in builder.BUILDER_CONFIGS)
  assert names == sorted(f'{layout}_{kind}' for layout in (*layouts.LAYOUTS, 'custom')
                         for kind in ('3d', '2d', '2d_xy'))


# ---- (b) good and bad annotations in one file --------------------------------


def bad_annotations():
  """frame_dir -> (annotation or None, a fragment its reason must hold)."""
  base = lambda name, **kw: {**mmaction_annotation(name, 3, 1, seed=7), **kw}
  nan = base('nan_kp')
  nan['keypoint'][0, 1, 2, 0] = np.nan
  inf = base('inf_score')
  inf['keypoint_score'][1, 0, 0] = np.inf
  bad = {
      'no_keypoint': ({k: v for k, v in base('no_keypoint').items()
                       if k != 'keypoint'}, 'no keypoint'),
      'no_label': ({k: v for k, v in base('no_label').items()
                    if k != 'label'}, 'no label'),
      'no_score': ({k: v for k, v in base('no_score').items()
                    if k != 'keypoint_score'}, 'no keypoint_score'),
      'frames_disagree': (base('frames_disagree', total_frames=4),
                          'keypoint has shape (2, 3, 17, 2)'),
      'ntu_joints': (mmaction_annotation('ntu_joints', 3, 0, num_joints=25),
                     'keypoint has shape (2, 3, 25, 2)'),
      'three_coords': (base('three_coords',
                            keypoint=np.zeros((2, 3, 17, 3), np.float32)),
                       'keypoint has shape (2, 3, 17, 3)'),
      'nan_kp': (nan, 'keypoint holds NaN'),
      'inf_score': (inf, 'keypoint_score holds NaN or infinite'),
      'float_label': (base('float_label', label=1.5), 'label 1.5 is not an integer'),
      'text_label': (base('text_label', label='1'), "label '1' is not an integer"),
      'label_out_of_range': (base('label_out_of_range', label=3),
                             'label 3 is not in [0, 3)'),
      'only_listed': (None, "in split 'val' but has no annotation"),
  }
  return bad


@pytest.fixture(scope='module')
def mixed(tmp_path_factory):
  root = tmp_path_factory.mktemp('mixed')
  good = [mmaction_annotation(f'good_{i}', 3 + i, i % 3, seed=10 + i)
          for i in range(4)]
  bad = bad_annotations()
  duplicate = mmaction_annotation('good_0', 9, 2, seed=99)
  unlisted = mmaction_annotation('in_no_split', 3, 0, seed=5)
  items = [a for a, _ in bad.values() if a is not None]
  write_pickle(
      root / 'raw' / 'mixed.pkl',
      {'train': ['good_0', 'good_1', 'good_2'] + list(bad)[:6],
       'val': ['good_3'] + list(bad)[6:],
       'test': ['nan_kp', 'no_score'],  # nothing good: left out
       'bad-name': ['good_1']},
      good[:2] + items[:5] + [duplicate] + good[2:] + items[5:] + [unlisted])
  (root / 'raw' / 'classes.txt').write_text('a\nb\nc\n')
  summary = build.build_dataset('pose_annotations/coco17_2d',
                                manual_dir=root / 'raw',
                                data_dir=root / 'tfds', quiet=True)
  return good, bad, summary, root


def test_mixed_file_keeps_every_good_annotation(mixed):
  good, _, summary, root = mixed
  assert summary.examples == {'train': 3, 'val': 1}
  records = _records(root / 'tfds', 'pose_annotations/coco17_2d', 'train', 'val')
  assert sorted(records) == [a['frame_dir'] for a in good]
  for annotation in good:  # the first of the two good_0 is kept
    np.testing.assert_allclose(
        records[annotation['frame_dir']]['skeleton'][..., :2],
        annotations.to_sample(annotation, 'coco17', '2d')[..., :2])
    assert records[annotation['frame_dir']]['num_frames'] == annotation[
        'total_frames']


def test_mixed_file_reports_every_bad_annotation(mixed):
  _, bad, summary, _ = mixed
  reasons = {}
  for skipped in summary.skipped:
    reasons.setdefault(skipped.path, []).append(skipped.reason)
  assert set(reasons) == set(bad) | {'good_0'}
  for name, (_, fragment) in bad.items():
    assert any(fragment in r for r in reasons[name]), (name, reasons[name])
  assert reasons['good_0'] == ['duplicate frame_dir; the first is kept']
  assert summary.ignored == 1  # in_no_split
  assert sorted(s.path for s in summary.splits_left_out) == ['bad-name', 'test']
  text = summary.format()
  for skipped in summary.skipped:
    assert f'    {skipped.path}: {skipped.reason}' in text
  assert 'split test left out: no annotation of it gave a record' in text
  assert f'{len(summary.skipped)} skipped' in text and 'annotations found' in text
  assert 'excluded' not in text and '1 ignored (in no split)' in text


def test_to_sample_rejects_a_negative_label_without_classes():
  annotation = mmaction_annotation('neg', 2, -1)
  with pytest.raises(annotations.AnnotationError, match='neg: label -1 is not >= 0'):
    annotations.to_sample(annotation, 'coco17', '2d')
  annotation['label'] = np.int64(7)  # any label >= 0 without classes
  assert annotations.to_sample(annotation, 'coco17', '2d').shape == (2, 2, 17, 3)


@pytest.mark.parametrize('change, fragment', [
    ({'img_shape': (0, 640)}, 'img_shape (0, 640) is not two positive sizes'),
    ({'img_shape': '480x640'}, "img_shape '480x640' is not (height, width)"),
    ({'img_shape': (1e-40, 1e-40)}, 'does not fit float32 once normalised'),
    ({'total_frames': 2.0}, 'total_frames 2.0 is not a positive integer'),
    ({'frame_dir': 'é'}, 'frame_dir is not ASCII of at most 64 bytes'),
    ({'frame_dir': 'x' * 65}, 'frame_dir is not ASCII of at most 64 bytes'),
    ({'label': True}, 'label True is not an integer'),
    ({'keypoint': [[['a']]]}, 'keypoint is not a numeric array'),
])
def test_to_sample_names_what_is_wrong(change, fragment):
  annotation = {**mmaction_annotation('clip', 2, 0), **change}
  with pytest.raises(annotations.AnnotationError, match=re.escape(fragment)):
    annotations.to_sample(annotation, 'coco17', '2d')


def test_a_file_with_nothing_usable_is_one_clear_error(tmp_path):
  write_pickle(tmp_path / 'raw' / 'bad.pkl', {'train': ['x']},
               [mmaction_annotation('x', 2, 0, img_shape=(0, 10))])
  with pytest.raises(annotations.AnnotationError,
                     match='no annotation .* gives a record.*x: img_shape'):
    build.build_dataset('pose_annotations/coco17_2d', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)


def test_keypoints_of_another_layout_are_one_clear_error(tmp_path):
  write_pickle(tmp_path / 'raw' / 'bad.pkl', {'train': ['x']},
               [mmaction_annotation('x', 2, 0, num_joints=18)])
  with pytest.raises(annotations.AnnotationError,
                     match=r"layout 'coco17' has 17 joints, but the keypoints of .*bad\.pkl "
                           r'have 18'):
    build.build_dataset('pose_annotations/coco17_2d', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)


def test_a_manual_dir_without_annotations_is_a_clear_error(tmp_path):
  (tmp_path / 'raw').mkdir()
  (tmp_path / 'raw' / 'readme.txt').write_text('nothing here')
  with pytest.raises(FileNotFoundError, match='no .pkl annotation file and no '
                     'OpenPose tree'):
    build.build_dataset('pose_annotations/coco17_2d', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)
  for name in ('a.pkl', 'b.pkl'):
    (tmp_path / 'raw' / name).write_bytes(b'')
  with pytest.raises(annotations.AnnotationError, match='holds 2 .pkl files'):
    build.build_dataset('pose_annotations/coco17_2d', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)


@pytest.mark.parametrize('content, fragment', [
    (b'not a pickle', 'not a pickle file'),
    (pickle.dumps([{'frame_dir': 'x'}]), "expected a dict with keys 'split'"),
    (pickle.dumps({'split': ['train'], 'annotations': []}), "'split' is a list"),
    (pickle.dumps({'split': {}, 'annotations': {}}), "'annotations' is a dict"),
])
def test_load_rejects_what_is_not_an_annotation_file(tmp_path, content, fragment):
  path = tmp_path / 'x.pkl'
  path.write_bytes(content)
  with pytest.raises(annotations.AnnotationError) as error:
    annotations.load_annotation_file(path)
  assert str(error.value).startswith(f'{path}: ') and fragment in str(error.value)


def test_load_reads_the_schema(tmp_path):
  annotation = mmaction_annotation('x', 2, 0)
  path = write_pickle(tmp_path / 'a.pkl', {'train': ['x']}, [annotation])
  data = annotations.load_annotation_file(path)
  assert data['split'] == {'train': ['x']}
  np.testing.assert_array_equal(data['annotations'][0]['keypoint'],
                                annotation['keypoint'])


# ---- (c) OpenPose JSON -------------------------------------------------------


def _person(centre, spread, score, num_keypoints):
  """A pose of `num_keypoints` around `centre`; its shape tells persons apart."""
  offsets = np.stack([np.linspace(-spread, spread, num_keypoints),
                      np.linspace(spread, -spread, num_keypoints) ** 2 / 20], -1)
  pose = np.concatenate([centre + offsets,
                         np.full((num_keypoints, 1), score)], -1)
  return pose


def crossing(num_keypoints, num_frames=10):
  """Two people walking past each other along one line: frame -> poses (K, 3)
  of A (score 0.9) and B (score 0.6), listed in a different order on odd
  frames; a third person is seen in frame 3 only."""
  frames = []
  for t in range(num_frames):
    a = _person(np.array([100 + 40 * t, 300.]), 30, 0.9, num_keypoints)
    b = _person(np.array([480 - 40 * t, 300.]), 50, 0.6, num_keypoints)
    people = [a, b] if t % 2 == 0 else [b, a]
    if t == 3:
      people.append(_person(np.array([600., 50.]), 10, 0.95, num_keypoints))
    frames.append(people)
  return frames


def write_clip(clip_dir, frames, shuffle_names=False):
  clip_dir.mkdir(parents=True)
  for t, people in enumerate(frames):
    data = {'version': 1.3, 'people': [
        {'person_id': [-1], 'pose_keypoints_2d': pose.ravel().tolist(),
         'face_keypoints_2d': [], 'hand_left_keypoints_2d': []}
        for pose in people]}
    name = f'{clip_dir.name}_{t:012d}_keypoints.json'
    (clip_dir / name).write_text(json.dumps(data))


def to_openpose18(pose):
  if len(pose) == 25:  # BODY_25: drop the mid-hip and the feet
    return pose[[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]
  return pose


@pytest.fixture(scope='module')
def openpose_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('openpose')
  raw = root / 'raw'
  body25, coco18 = crossing(25), crossing(18, num_frames=7)
  coco18[4] = [coco18[4][0]]  # B missing in one frame
  write_clip(raw / 'train' / 'walk' / 'walk_body25', body25)
  write_clip(raw / 'test' / 'walk' / 'walk_coco18', coco18)
  write_clip(raw / 'train' / 'stand' / 'still', [[_person(
      np.array([320., 240.]), 20, 0.8, 18)]] * 3)
  write_clip(raw / 'train' / 'stand' / 'broken', crossing(18, 3))
  broken = raw / 'train' / 'stand' / 'broken' / 'broken_000000000001_keypoints.json'
  broken.write_text('{"people": [{"pose_keypoints_2d": [1, 2')
  summary = build.build_dataset('pose_annotations/openpose18_2d',
                                manual_dir=raw, data_dir=root / 'tfds',
                                quiet=True)
  frames = {'walk_body25': body25, 'walk_coco18': coco18}
  return frames, summary, root, broken


def test_openpose_tree_builds_with_people_followed(openpose_tree):
  frames, summary, root, _ = openpose_tree
  assert summary.examples == {'train': 2, 'test': 1}
  records = _records(root / 'tfds', 'pose_annotations/openpose18_2d', 'train', 'test')
  assert sorted(records) == ['still', 'walk_body25', 'walk_coco18']
  for name, clip in frames.items():
    expected = np.zeros((len(clip), 2, 18, 3), np.float32)
    for t, people in enumerate(clip):
      # A (score 0.9) is listed first on even frames, B on odd ones.
      if len(people) == 1:
        a, b = people[0], None
      else:
        a, b = people[:2] if t % 2 == 0 else people[1::-1]
      for slot, pose in enumerate((a, b)):
        if pose is not None:
          pose = to_openpose18(pose)
          expected[t, slot, :, :2] = normalised(pose[:, :2], None, 1080, 1920)
          expected[t, slot, :, 2] = pose[:, 2]
    np.testing.assert_allclose(records[name]['skeleton'], expected, atol=1e-6)
  builder = tfds.builder('pose_annotations/openpose18_2d', data_dir=root / 'tfds')
  assert builder.info.features['label'].names == ['stand', 'walk']
  assert records['walk_coco18']['label'] == 1 and records['still']['label'] == 0
  assert dict(builder.info.metadata.items()) == {
      'layout': 'openpose18', 'custom_layout': None, 'channels': 'xys', 'num_persons': 2,
      'preprocessing': None}


def test_openpose_malformed_json_skips_its_clip(openpose_tree):
  _, summary, _, broken = openpose_tree
  assert [s.path for s in summary.skipped] == ['broken']
  assert str(broken) in summary.skipped[0].reason
  assert 'not valid JSON' in summary.skipped[0].reason
  assert f'broken: {broken}: not valid JSON' in summary.format()
  assert summary.num_files == 4


def test_track_people_follows_people_who_cross():
  tracks = openpose.track_people(crossing(18))
  assert len(tracks) == 3  # A, B and the passer-by
  present = (tracks[..., 2] > 0).any(-1).sum(-1)
  assert present.tolist() == [10, 10, 1]
  assert (tracks[0, :, :, 2] == 0.9).all() and (tracks[1, :, :, 2] == 0.6).all()


def test_read_clip_maps_body25_to_coco17(tmp_path):
  write_clip(tmp_path / 'c', crossing(25, num_frames=2))
  clip = openpose.read_clip(tmp_path / 'c', layout='coco17')
  assert clip['keypoint'].shape == (2, 2, 17, 2)
  a = crossing(25, num_frames=1)[0][0]
  names = openpose.BODY_25
  for v, joint in enumerate(layouts.COCO17.joint_names):
    np.testing.assert_allclose(clip['keypoint'][0, 0, v], a[names.index(joint), :2])


@pytest.mark.parametrize('text, fragment', [
    ('[]', "no 'people' list"),
    ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', 'has 3 values'),
    ('{"people": [{"pose_keypoints_2d": ["1"]}]}', 'not a list of numbers'),
    ('{"people": [{"pose_keypoints_2d": [' + ','.join(['NaN'] * 54) + ']}]}',
     'NaN or infinite'),
])
def test_parse_frame_names_what_is_wrong(text, fragment):
  with pytest.raises(annotations.AnnotationError, match=fragment):
    openpose.parse_frame(text, 'f.json')
  assert openpose.parse_frame('{"people": [{"pose_keypoints_2d": []}]}') == []


# ---- (d) a skeleton of one's own, one person, 3D normalisation ------------------

HAND = {'name': 'hand5', 'joints': ['wrist', 'thumb', 'index', 'middle', 'little'],
        'bones': [['thumb', 'wrist'], ['index', 'wrist'], ['middle', 'wrist'],
                  ['little', 'wrist']],
        'centre': 'wrist'}


def hand_annotation(frame_dir, label, num_frames=6, seed=0, num_persons=1, dims=3):
  rng = np.random.default_rng(seed)
  return {'frame_dir': frame_dir, 'label': label, 'total_frames': num_frames,
          'keypoint': rng.normal(1.0, 0.5, (num_persons, num_frames, 5, dims)
                                 ).astype(np.float32),
          'keypoint_score': rng.uniform(0.5, 1, (num_persons, num_frames, 5)
                                        ).astype(np.float32)}


@pytest.fixture(scope='module')
def hands(tmp_path_factory):
  """A 2D file of one-person hands with layout.json, built as custom_2d."""
  root = tmp_path_factory.mktemp('hands')
  samples = [hand_annotation(f'h{i}', i % 2, seed=i, dims=2) for i in range(4)]
  write_pickle(root / 'raw' / 'hands.pkl', {'train': ['h0', 'h1', 'h2'], 'test': ['h3']},
               samples)
  (root / 'raw' / 'layout.json').write_text(json.dumps(HAND))
  summary = build.build_dataset('pose_annotations/custom_2d', manual_dir=root / 'raw',
                                data_dir=root / 'tfds', quiet=True)
  return samples, summary, root / 'tfds'


def test_a_layout_file_builds_one_person_of_its_joints(hands):
  samples, summary, data_dir = hands
  assert summary.examples == {'train': 3, 'test': 1} and not summary.skipped
  builder = tfds.builder('pose_annotations/custom_2d', data_dir=data_dir)
  assert dict(builder.info.metadata.items()) == {
      'layout': 'hand5', 'custom_layout': HAND, 'channels': 'xys', 'num_persons': 1,
      'preprocessing': None}
  records = _records(data_dir, 'pose_annotations/custom_2d', 'train', 'test')
  for sample in samples:
    skeleton = records[sample['frame_dir']]['skeleton']
    assert skeleton.shape == (6, 1, 5, 3)  # one person stays one
    np.testing.assert_allclose(
        skeleton[:, 0, :, :2], normalised(sample['keypoint'][0], sample['keypoint_score'][0],
                                          1080, 1920), atol=1e-6)


def test_a_layout_file_of_other_joints_than_the_keypoints_is_named(tmp_path):
  write_pickle(tmp_path / 'raw' / 'hands.pkl', {'train': ['h0']},
               [hand_annotation('h0', 0, dims=2)])
  (tmp_path / 'raw' / 'layout.json').write_text(json.dumps(
      dict(HAND, joints=HAND['joints'] + ['ring'], bones=HAND['bones'] + [['ring', 'wrist']])))
  with pytest.raises(annotations.AnnotationError,
                     match=rf"^{tmp_path / 'raw' / 'layout.json'}: 6 joints, but the keypoints "
                           rf"of .*hands\.pkl have 5$"):
    build.build_dataset('pose_annotations/custom_2d', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)
  (tmp_path / 'raw' / 'layout.json').unlink()
  with pytest.raises(FileNotFoundError, match=r'layout\.json not found: the custom_\* configs'):
    build.build_dataset('pose_annotations/custom_2d', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)


def test_3d_normalisation_centres_and_aligns():
  hand = layouts.from_json(HAND)
  sample = hand_annotation('h', 0, num_persons=2, seed=5)
  sample['keypoint'][1] *= 0.01  # the person who moves least comes second
  sample['keypoint'][0, 2, 3] = 0  # unseen: stays zero
  raw = annotations.to_sample(sample, hand, '3d')
  every = annotations.to_sample(
      sample, hand, '3d', normalization=annotations.Normalization('every_frame'))
  seen = (raw != 0).any(-1, keepdims=True)
  np.testing.assert_allclose(every, (raw - raw[:, :1, :1]) * seen, atol=1e-6)
  assert (every[2, 0, 3] == 0).all()
  first = annotations.to_sample(
      sample, hand, '3d', normalization=annotations.Normalization('first_frame', 'index'))
  np.testing.assert_allclose(first, (raw - raw[:1, :1, 2:3]) * seen, atol=1e-6)

  # The thumb's bone turned to +z, then index -> little to +x: made perpendicular
  # first, both end up exactly on their axes, and lengths are kept.
  keypoint = sample['keypoint'][:1].copy()
  up = keypoint[0, 0, 1] - keypoint[0, 0, 0]
  across = keypoint[0, 0, 4] - keypoint[0, 0, 2]
  keypoint[0, :, 4] -= np.dot(across, up) / np.dot(up, up) * up
  aligned = annotations.to_sample(
      dict(sample, keypoint=keypoint), hand, '3d', normalization=annotations.Normalization(
          'every_frame', align=('wrist', 'thumb', 'index', 'little')))
  z, x = aligned[0, 0, 1] - aligned[0, 0, 0], aligned[0, 0, 4] - aligned[0, 0, 2]
  np.testing.assert_allclose(z / np.linalg.norm(z), [0, 0, 1], atol=1e-5)
  np.testing.assert_allclose(x / np.linalg.norm(x), [1, 0, 0], atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(aligned, axis=-1),
                             np.linalg.norm(annotations.to_sample(
                                 dict(sample, keypoint=keypoint), hand, '3d',
                                 normalization=annotations.Normalization('every_frame')),
                                 axis=-1), atol=1e-5)


@pytest.mark.parametrize('spec', ['centre=every_frame:wrist', 'centre=first_frame:index',
                                  'align=wrist:thumb:index:little',
                                  'centre=every_frame:wrist,align=wrist:thumb:index:little'])
def test_a_normalisation_is_its_spec(spec):
  normalization = annotations.Normalization.from_spec(spec)
  assert normalization.spec == spec
  assert normalization.for_layout(layouts.from_json(HAND)) == normalization


@pytest.mark.parametrize('spec,fragment', [
    ('centre=sideways', "centre='sideways' is not one of"),
    ('centre=first_frame,flip=x', 'is not a 3D normalisation'),
    ('align=a:b:c', 'must name four joints'),
])
def test_a_bad_normalisation_says_what_is_wrong(spec, fragment):
  with pytest.raises(ValueError, match=re.escape(fragment)):
    annotations.Normalization.from_spec(spec)


# ---- The command -------------------------------------------------------------


def _run(args):
  env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT)}
  return subprocess.run([sys.executable, '-m', 'data_prep.build', *args],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=300)


def test_command_line_builds_an_annotation_file(mixed, tmp_path):
  _, bad, _, root = mixed
  result = _run(['pose_annotations/coco17_2d', f'--manual_dir={root / "raw"}',
                 f'--data_dir={tmp_path}', '--quiet'])
  assert result.returncode == 0, result.stderr
  assert 'examples: train 3, val 1' in result.stdout
  for name in bad:
    assert f'    {name}: ' in result.stdout


def test_command_line_reports_a_bad_pickle_as_one_line(tmp_path):
  (tmp_path / 'raw').mkdir()
  (tmp_path / 'raw' / 'x.pkl').write_text('junk')
  result = _run(['pose_annotations/coco17_2d', f'--manual_dir={tmp_path / "raw"}',
                 f'--data_dir={tmp_path / "tfds"}', '--quiet'])
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ')
  assert f'{tmp_path / "raw" / "x.pkl"}: not a pickle file' in lines[0]


def test_command_line_builds_3d_keypoints_normalised_without_tfds_chatter(tmp_path):
  samples = [hand_annotation(f'h{i}', i % 2, seed=i) for i in range(3)]
  write_pickle(tmp_path / 'raw' / 'hands.pkl', {'train': ['h0', 'h1'], 'test': ['h2']},
               samples)
  (tmp_path / 'raw' / 'layout.json').write_text(json.dumps(HAND))
  args = ['pose_annotations/custom_3d', f'--manual_dir={tmp_path / "raw"}',
          f'--data_dir={tmp_path / "tfds"}', '--centre=first_frame',
          '--align=wrist,thumb,index,little']
  result = _run(args)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('pose_annotations/custom_3d -> ')
  assert 'examples: test 1, train 2' in result.stdout
  assert 'Downloading' not in result.stdout + result.stderr
  builder = tfds.builder('pose_annotations/custom_3d', data_dir=tmp_path / 'tfds')
  assert builder.info.metadata['preprocessing'] == (
      'centre=first_frame:wrist,align=wrist:thumb:index:little')

  (tmp_path / 'raw' / 'layout.json').write_text(json.dumps(dict(HAND, centre='palm')))
  for flags, fragment in (
      (['--overwrite'], f"{tmp_path / 'raw' / 'layout.json'}: centre 'palm' is not one of "
                        'its joints'),
      (['--overwrite', '--align=wrist,thumb'], 'must name four joints'),
      (['--overwrite', '--centre_joint=thumb'], 'needs a centre')):
    result = _run(args[:3] + flags)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and fragment in lines[0], lines
